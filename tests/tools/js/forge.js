// A CSR the way node-forge's README makes one: a CN that is an e-mail address.
const forge = require('node-forge');
const keys = forge.pki.rsa.generateKeyPair(2048);
const csr = forge.pki.createCertificationRequest();
csr.publicKey = keys.publicKey;
csr.setSubject([
  {name: 'countryName', value: 'US'},
  {name: 'stateOrProvinceName', value: 'New York'},
  {name: 'organizationName', value: 'The Sample Company'},
  {name: 'commonName', value: process.argv[2] || 'alice@sample.com'},
]);
csr.setAttributes([{name: 'extensionRequest', extensions: [
  {name: 'subjectAltName', altNames: [{type: 1, value: process.argv[2] || 'alice@sample.com'}]}]}]);
csr.sign(keys.privateKey, forge.md.sha256.create());
process.stdout.write(forge.pki.certificationRequestToPem(csr));
