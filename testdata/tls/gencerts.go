//go:build ignore

// gencerts writes the test CA and the server certificates of testdata/tls.
// It was run once, by hand, from the repository root:
//
//	go run testdata/tls/gencerts.go
//
// The CA's private key is never written: nothing else can be signed by it,
// and running the program again replaces every file with a new CA.
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

const dir = "testdata/tls"

var (
	notBefore = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	notAfter  = time.Date(2046, 1, 1, 0, 0, 0, 0, time.UTC)
)

func main() {
	caKey := newKey()
	ca := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "georoute test CA"},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		log.Fatal(err)
	}
	ca, err = x509.ParseCertificate(caDER)
	if err != nil {
		log.Fatal(err)
	}
	writePEM("ca.pem", "CERTIFICATE", caDER)

	// server: localhost and 127.0.0.1.
	leaf(ca, caKey, 2, "server", []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)})
	// localhost-only: no IP SAN, so https://127.0.0.1:PORT must not verify.
	leaf(ca, caKey, 3, "localhost-only", []string{"localhost"}, nil)
}

func leaf(ca *x509.Certificate, caKey *ecdsa.PrivateKey, serial int64, name string, dns []string, ips []net.IP) {
	key := newKey()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: dns[0]},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     dns,
		IPAddresses:  ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		log.Fatal(err)
	}
	writePEM(name+".pem", "CERTIFICATE", der)
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		log.Fatal(err)
	}
	writePEM(name+"-key.pem", "PRIVATE KEY", keyDER)
}

func newKey() *ecdsa.PrivateKey {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		log.Fatal(err)
	}
	return key
}

func writePEM(name, typ string, der []byte) {
	b := pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
	if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
		log.Fatal(err)
	}
}
