// A CSR as PKI.js's own example makes one (WebCrypto P-256 key, SHA-256).
import * as pkijs from 'pkijs';
import * as asn1js from 'asn1js';
import { webcrypto } from 'node:crypto';
const crypto = new pkijs.CryptoEngine({ name: 'node', crypto: webcrypto });
pkijs.setEngine('node', crypto);
const host = process.argv[2] || 'pkijs.sample.com';
const csr = new pkijs.CertificationRequest();
const attr = (oid, value, type = asn1js.PrintableString) =>
  new pkijs.AttributeTypeAndValue({ type: oid, value: new type({ value }) });
csr.subject.typesAndValues.push(attr('2.5.4.6', 'US'));
csr.subject.typesAndValues.push(attr('2.5.4.8', 'New York'));
csr.subject.typesAndValues.push(attr('2.5.4.10', 'The Sample Company'));
csr.subject.typesAndValues.push(attr('2.5.4.3', host, asn1js.Utf8String));
const keys = await crypto.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify']);
await csr.subjectPublicKeyInfo.importKey(keys.publicKey);
const altNames = new pkijs.GeneralNames({ names: [new pkijs.GeneralName({ type: 2, value: host })] });
csr.attributes = [new pkijs.Attribute({
  type: '1.2.840.113549.1.9.14',
  values: [new pkijs.Extensions({ extensions: [new pkijs.Extension({
    extnID: '2.5.29.17', critical: false, extnValue: altNames.toSchema().toBER(false) })] }).toSchema()],
})];
await csr.sign(keys.privateKey, 'SHA-256');
const der = Buffer.from(csr.toSchema().toBER(false));
process.stdout.write('-----BEGIN CERTIFICATE REQUEST-----\n' + der.toString('base64').match(/.{1,64}/g).join('\n') + '\n-----END CERTIFICATE REQUEST-----\n');
