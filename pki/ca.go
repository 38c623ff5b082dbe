package pki

import (
	"bytes"
	"certmail/durable"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"certmail/evidence"
)

// File names of the local CA and the agent's TLS certificate in the data directory.
const (
	CAKeyFile   = "ca.key"  // PKCS #8, PEM, mode 0600
	CACertFile  = "ca.crt"  // PEM; what clients install to trust the agent
	TLSKeyFile  = "tls.key" // PKCS #8, PEM, mode 0600
	TLSCertFile = "tls.crt" // PEM: the leaf, then the CA certificate
)

// Lifetimes. A server certificate lives at most 397 days, what browsers accept from any CA,
// and is renewed when it has less than 30 days left.
const (
	caLifetime   = 10 * 365 * 24 * time.Hour
	leafLifetime = 397 * 24 * time.Hour
	leafRenewal  = 30 * 24 * time.Hour
	userLifetime = 730 * 24 * time.Hour
	backdate     = time.Hour // tolerates clients whose clocks are a little behind
)

// CA is the agent's local certificate authority. Its certificate is what a client installs to
// trust the agent's TLS listeners and the S/MIME signatures on its receipts.
type CA struct {
	cert *x509.Certificate
	key  crypto.Signer
}

// LoadOrCreateCA loads the CA from dir/ca.key and dir/ca.crt, or creates one named "certmail
// local CA for name": ECDSA P-256, valid for ten years from now, allowed to sign end-entity
// certificates only (MaxPathLen 0).
func LoadOrCreateCA(dir, name string, now time.Time) (*CA, error) {
	if name == "" || strings.ContainsFunc(name, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return nil, fmt.Errorf("pki: CA name %q: want a non-empty line of text", name)
	}
	if err := EnsurePrivateDir(dir); err != nil {
		return nil, err
	}
	keyPath := filepath.Join(dir, CAKeyFile)
	certPath := filepath.Join(dir, CACertFile)
	_, keyErr := os.Lstat(keyPath)
	_, certErr := os.Lstat(certPath)
	switch {
	case errors.Is(keyErr, fs.ErrNotExist) && errors.Is(certErr, fs.ErrNotExist):
		return createCA(keyPath, certPath, name, now)
	case errors.Is(keyErr, fs.ErrNotExist):
		return nil, fmt.Errorf("pki: %s exists but %s does not: restore %s from a backup, "+
			"or move %s away to create a new CA (clients must then trust the new %s)", certPath, keyPath, keyPath, certPath, CACertFile)
	case errors.Is(certErr, fs.ErrNotExist):
		return nil, fmt.Errorf("pki: %s exists but %s does not: restore %s from a backup, "+
			"or move %s away to create a new CA (clients must then trust the new %s)", keyPath, certPath, certPath, keyPath, CACertFile)
	}
	return loadCA(keyPath, certPath, now)
}

func createCA(keyPath, certPath, name string, now time.Time) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("pki: generate CA key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "certmail local CA for " + name, Organization: []string{"certmail"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(caLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("pki: create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("pki: create CA certificate: %w", err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, err
	}
	if err := durable.CreateExclusive(keyPath, keyPEM, 0o600); err != nil {
		return nil, fmt.Errorf("pki: write CA key: %w", err)
	}
	if err := durable.CreateExclusive(certPath, encodeCert(der), 0o644); err != nil {
		return nil, fmt.Errorf("pki: write CA certificate: %w", err)
	}
	return &CA{cert: cert, key: key}, nil
}

func loadCA(keyPath, certPath string, now time.Time) (*CA, error) {
	keyPEM, err := readPrivateFile(keyPath)
	if err != nil {
		var perr *PermissionError
		if errors.As(err, &perr) {
			return nil, err
		}
		return nil, fmt.Errorf("pki: CA key: %w", err)
	}
	key, err := decodeKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("pki: CA key %s: %w", keyPath, err)
	}
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, fmt.Errorf("pki: CA certificate: %w", err)
	}
	certs, err := decodeCerts(certPEM)
	if err != nil || len(certs) != 1 {
		return nil, fmt.Errorf("pki: CA certificate %s: want one PEM certificate (%v)", certPath, err)
	}
	cert := certs[0]
	switch {
	case !cert.IsCA || !cert.BasicConstraintsValid || cert.KeyUsage&x509.KeyUsageCertSign == 0:
		return nil, fmt.Errorf("pki: %s is not a CA certificate", certPath)
	case !publicKeyEqual(cert.PublicKey, key.Public()):
		return nil, fmt.Errorf("pki: %s and %s do not belong together: restore the pair from a backup", keyPath, certPath)
	case cert.CheckSignatureFrom(cert) != nil:
		return nil, fmt.Errorf("pki: %s is not self-signed", certPath)
	case now.Before(cert.NotBefore):
		return nil, fmt.Errorf("pki: CA certificate %s is valid only from %s: is the clock right?", certPath, cert.NotBefore.UTC().Format(time.RFC3339))
	case !now.Before(cert.NotAfter):
		return nil, fmt.Errorf("pki: CA certificate %s expired on %s: move %s and %s away to create a new CA, and have clients trust the new %s",
			certPath, cert.NotAfter.UTC().Format(time.RFC3339), keyPath, certPath, CACertFile)
	}
	return &CA{cert: cert, key: key}, nil
}

// Certificate returns the CA certificate.
func (ca *CA) Certificate() *x509.Certificate { return ca.cert }

// CertPool returns a pool holding the CA certificate alone, for clients that trust this agent.
func (ca *CA) CertPool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// ServerCertificate returns the agent's TLS certificate for hosts (DNS names and IP
// addresses). It reuses dir/tls.crt and dir/tls.key when they are signed by this CA, cover
// every host and have more than 30 days left; otherwise it issues a new certificate, valid for
// 397 days, and writes it there.
func (ca *CA) ServerCertificate(dir string, hosts []string, now time.Time) (tls.Certificate, error) {
	dnsNames, ips, err := splitHosts(hosts)
	if err != nil {
		return tls.Certificate{}, err
	}
	if err := EnsurePrivateDir(dir); err != nil {
		return tls.Certificate{}, err
	}
	keyPath := filepath.Join(dir, TLSKeyFile)
	certPath := filepath.Join(dir, TLSCertFile)
	if cert, ok := ca.loadLeaf(keyPath, certPath, hosts, now); ok {
		return cert, nil
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("pki: generate TLS key: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return tls.Certificate{}, err
	}
	cn := hosts[0]
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    now.Add(-backdate),
		NotAfter:     ca.capExpiry(now.Add(leafLifetime)),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     dnsNames,
		IPAddresses:  ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("pki: issue TLS certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("pki: issue TLS certificate: %w", err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return tls.Certificate{}, err
	}
	// Key first: a crash between the two leaves a pair that does not match, which the next
	// start replaces.
	if err := durable.WriteAtomic(keyPath, keyPEM, 0o600); err != nil {
		return tls.Certificate{}, fmt.Errorf("pki: write TLS key: %w", err)
	}
	chain := append(encodeCert(der), encodeCert(ca.cert.Raw)...)
	if err := durable.WriteAtomic(certPath, chain, 0o644); err != nil {
		return tls.Certificate{}, fmt.Errorf("pki: write TLS certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der, ca.cert.Raw}, PrivateKey: key, Leaf: leaf}, nil
}

// loadLeaf returns the stored TLS certificate if it can be used for hosts until 30 days from now.
// Any problem (missing, damaged, exposed key, other CA, other hosts) means a new one is issued.
func (ca *CA) loadLeaf(keyPath, certPath string, hosts []string, now time.Time) (tls.Certificate, bool) {
	keyPEM, err := readPrivateFile(keyPath)
	if err != nil {
		return tls.Certificate{}, false
	}
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return tls.Certificate{}, false
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil || cert.Leaf == nil {
		return tls.Certificate{}, false
	}
	leaf := cert.Leaf
	_, err = leaf.Verify(x509.VerifyOptions{
		Roots:       ca.CertPool(),
		CurrentTime: now,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil || !now.Add(leafRenewal).Before(leaf.NotAfter) {
		return tls.Certificate{}, false
	}
	for _, h := range hosts {
		if leaf.VerifyHostname(h) != nil {
			return tls.Certificate{}, false
		}
	}
	return cert, true
}

// IssueUser issues an S/MIME certificate binding address to pub (RFC 8550, RFC 8551): the
// address as its only rfc822Name, for e-mail protection only, valid for two years. It returns
// the certificate in DER.
func (ca *CA) IssueUser(address string, pub crypto.PublicKey, now time.Time) ([]byte, error) {
	if err := evidence.CheckAddress(address); err != nil {
		return nil, fmt.Errorf("pki: user certificate: %w", err)
	}
	for i := 0; i < len(address); i++ {
		if address[i] >= 0x80 {
			// An internationalized address needs an SmtpUTF8Mailbox otherName (RFC 8398).
			return nil, fmt.Errorf("pki: user certificate for %q: internationalized addresses are not supported yet", address)
		}
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	usage := x509.KeyUsageDigitalSignature
	if _, ok := pub.(*rsa.PublicKey); ok {
		usage |= x509.KeyUsageKeyEncipherment
	}
	tmpl := &x509.Certificate{
		SerialNumber:   serial,
		Subject:        pkix.Name{CommonName: address},
		NotBefore:      now.Add(-backdate),
		NotAfter:       ca.capExpiry(now.Add(userLifetime)),
		KeyUsage:       usage,
		ExtKeyUsage:    []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection},
		EmailAddresses: []string{address},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		return nil, fmt.Errorf("pki: user certificate for %s: %w", address, err)
	}
	return der, nil
}

// capExpiry keeps a certificate from outliving the CA that signs it.
func (ca *CA) capExpiry(t time.Time) time.Time {
	if t.After(ca.cert.NotAfter) {
		return ca.cert.NotAfter
	}
	return t
}

// splitHosts sorts host names from IP addresses for a certificate's subject alternative names.
func splitHosts(hosts []string) (dnsNames []string, ips []net.IP, err error) {
	if len(hosts) == 0 {
		return nil, nil, errors.New("pki: TLS certificate: no host names")
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			ips = append(ips, ip)
			continue
		}
		if err := evidence.CheckHost(h); err != nil {
			return nil, nil, fmt.Errorf("pki: TLS certificate: %w", err)
		}
		dnsNames = append(dnsNames, h)
	}
	return dnsNames, ips, nil
}

func newSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("pki: serial number: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil // positive, as RFC 5280 4.1.2.2 requires
}

func encodeCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func encodeKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("pki: encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func decodeKey(b []byte) (crypto.Signer, error) {
	block, rest := pem.Decode(b)
	if block == nil || block.Type != "PRIVATE KEY" || len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("want one PEM block of type PRIVATE KEY")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("unsupported key type %T", k)
	}
	return s, nil
}

func decodeCerts(b []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("unexpected PEM block %q", block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		certs = append(certs, c)
	}
	if len(bytes.TrimSpace(b)) != 0 {
		return nil, errors.New("trailing data after the PEM blocks")
	}
	return certs, nil
}

func publicKeyEqual(a, b crypto.PublicKey) bool {
	ea, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ea.Equal(b)
}
