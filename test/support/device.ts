/** A minimal in-test device: builds signed request/refresh envelopes with the project's codecs. */
import nacl from 'tweetnacl';
import { encodeSign1, protectedHeader, sigStructure } from '../../src/protocol/cose.ts';
import { encodeRefreshBody, encodeRequestBody, type RequestBody } from '../../src/protocol/messages.ts';
import { oobProof } from '../../src/protocol/oob.ts';
import { ed25519Sign, generateEd25519, rawPublicKey } from '../../src/tokens/ed25519.ts';
import type { KeyObject } from 'node:crypto';

export class TestDevice {
  readonly key: KeyObject;
  readonly pk: Buffer;
  readonly box = nacl.box.keyPair();

  constructor(
    readonly id: string,
    key?: KeyObject,
  ) {
    this.key = key ?? generateEd25519().privateKey;
    this.pk = rawPublicKey(this.key);
  }

  sign(payload: Uint8Array, signer: KeyObject = this.key): Buffer {
    const prot = protectedHeader();
    return encodeSign1(prot, payload, ed25519Sign(signer, sigStructure(prot, payload)));
  }

  /** A signed `/idprov/request` payload. */
  request(opts: { nonce?: Uint8Array | undefined; mac?: Uint8Array; secret?: string; seal?: boolean; type?: 0 | 1 | 2; pk?: Uint8Array } = {}): Buffer {
    const body: RequestBody = { id: this.id, pk: opts.pk ?? this.pk, type: opts.type ?? 0 };
    if (opts.nonce) body.nonce = opts.nonce;
    if (opts.mac) body.mac = opts.mac;
    if (opts.seal) body.xk = this.box.publicKey;
    if (opts.secret && opts.nonce) body.oob = oobProof(opts.secret, opts.nonce, body.pk);
    return this.sign(encodeRequestBody(body));
  }

  /** A signed `/idprov/refresh` payload. */
  refresh(token: Uint8Array, nonce?: Uint8Array, id = this.id): Buffer {
    return this.sign(encodeRefreshBody({ id, token, ...(nonce ? { nonce } : {}) }));
  }
}
