/** Hex text and bytes, both ways. */
export const hex = (s: string): Buffer => Buffer.from(s, 'hex');
export const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
