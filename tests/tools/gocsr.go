// gocsr: a CSR as a Go program makes one with crypto/x509 and ordinary options.
//
//	go run gocsr.go -cn NAME -dns NAME [-key ec|rsa] > name.csr
package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"flag"
	"os"
)

func main() {
	cn := flag.String("cn", "go.sample.com", "commonName")
	dns := flag.String("dns", "", "a DNS subjectAltName")
	kind := flag.String("key", "ec", "ec or rsa")
	flag.Parse()
	var key crypto.Signer
	var err error
	if *kind == "rsa" {
		key, err = rsa.GenerateKey(rand.Reader, 2048)
	} else {
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if err != nil {
		panic(err)
	}
	template := x509.CertificateRequest{
		Subject: pkix.Name{
			Country:      []string{"US"},
			Province:     []string{"New York"},
			Organization: []string{"The Sample Company"},
			CommonName:   *cn,
		},
	}
	if *dns != "" {
		template.DNSNames = []string{*dns}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &template, key)
	if err != nil {
		panic(err)
	}
	pem.Encode(os.Stdout, &pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}
