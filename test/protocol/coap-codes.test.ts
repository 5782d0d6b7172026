/**
 * CoAP codes encoded once (issue 15): numbers `class << 5 | detail` everywhere, `c.dd` text only for
 * humans. Checked against coap-packet, an independent encoder of the text form.
 */
import assert from 'node:assert/strict';
import { generate } from 'coap-packet';
import { CoapCode, codeClass, codeOf, formatCode, isResponseCode, parseCode } from '../../src/protocol/coap-codes.ts';

describe('CoAP codes (RFC 7252 §3, §12.1.2)', () => {
  it('names each code by the header byte coap-packet writes for its c.dd text', () => {
    for (const [name, code] of Object.entries(CoapCode)) {
      const wire = generate({ code: formatCode(code), messageId: 1, ack: true })[1];
      assert.equal(wire, code, name);
    }
    assert.equal(CoapCode.Content, codeOf(2, 5));
    assert.equal(CoapCode.TooManyRequests, codeOf(4, 29));
    assert.equal(codeClass(CoapCode.ServiceUnavailable), 5);
  });

  it('formats a code as c.dd and parses the text back', () => {
    assert.equal(formatCode(0x45), '2.05');
    assert.equal(formatCode(0xa3), '5.03');
    assert.equal(formatCode(0x01), '0.01');
    assert.equal(formatCode(-1), 'invalid(-1)');
    for (let c = 0x40; c < 0xc0; c++) if (c >> 5 !== 3) assert.equal(parseCode(formatCode(c)), c);
  });

  it('parses response codes and refuses non-response codes', () => {
    assert.equal(parseCode('2.05'), 69);
    assert.equal(parseCode('5.03'), 163);
    for (const c of ['0.01', '1.00', '3.00', '2.32', '2.5', '205', '']) assert.equal(parseCode(c), -1, c);
  });

  it('takes as a response code only an integer of class 2, 4 or 5', () => {
    for (const c of [0x41, 0x45, 0x5f, 0x80, 0x9d, 0xbf]) assert.equal(isResponseCode(c), true, String(c));
    for (const c of [0, 0x01, 0x20, 0x60, 0xc0, 0xff, 0x100, -1, 2.5, '2.05', null, undefined]) assert.equal(isResponseCode(c), false, String(c));
  });
});
