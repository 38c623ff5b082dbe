package pki_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"certmail/pki"
)

var t0 = time.Date(2026, 11, 23, 18, 0, 0, 0, time.UTC)

func newCA(t *testing.T, now time.Time) (*pki.CA, string) {
	t.Helper()
	dir := t.TempDir()
	ca, err := pki.LoadOrCreateCA(dir, "mail.a.example", now)
	if err != nil {
		t.Fatal(err)
	}
	return ca, dir
}

func TestCACreateThenLoad(t *testing.T) {
	t.Parallel()
	ca, dir := newCA(t, t0)
	c := ca.Certificate()
	if c.Subject.CommonName != "certmail local CA for mail.a.example" {
		t.Errorf("CN %q", c.Subject.CommonName)
	}
	if !c.IsCA || !c.BasicConstraintsValid || c.MaxPathLen != 0 || !c.MaxPathLenZero {
		t.Errorf("basic constraints: IsCA %v valid %v MaxPathLen %d zero %v", c.IsCA, c.BasicConstraintsValid, c.MaxPathLen, c.MaxPathLenZero)
	}
	if c.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign {
		t.Errorf("key usage %b", c.KeyUsage)
	}
	if _, ok := c.PublicKey.(*ecdsa.PublicKey); !ok || c.PublicKey.(*ecdsa.PublicKey).Curve != elliptic.P256() {
		t.Errorf("public key %T, want ECDSA P-256", c.PublicKey)
	}
	if got := c.NotAfter.Sub(t0); got < 3650*24*time.Hour || got > 3653*24*time.Hour {
		t.Errorf("lifetime %v, want ten years", got)
	}
	if !c.NotBefore.Before(t0) {
		t.Errorf("NotBefore %v not before creation %v", c.NotBefore, t0)
	}
	if m := mode(t, filepath.Join(dir, pki.CAKeyFile)); m != 0o600 {
		t.Errorf("ca.key mode %04o", m)
	}
	if m := mode(t, filepath.Join(dir, pki.CACertFile)); m != 0o644 {
		t.Errorf("ca.crt mode %04o", m)
	}

	again, err := pki.LoadOrCreateCA(dir, "mail.a.example", t0.Add(365*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if !again.Certificate().Equal(c) {
		t.Fatal("second start made another CA")
	}
	// The reloaded CA signs: a certificate it issues verifies against the first one's pool.
	tlsCert, err := again.ServerCertificate(dir, []string{"localhost"}, t0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tlsCert.Leaf.Verify(x509.VerifyOptions{Roots: ca.CertPool(), CurrentTime: t0}); err != nil {
		t.Fatal(err)
	}
}

func TestCARefusals(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		now    time.Time
		damage func(t *testing.T, dir string)
		want   string
	}{
		{"key readable by others", t0, func(t *testing.T, dir string) { chmod(t, filepath.Join(dir, pki.CAKeyFile), 0o644) }, "chmod 600"},
		{"key lost", t0, func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, pki.CAKeyFile)) }, "restore"},
		{"certificate lost", t0, func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, pki.CACertFile)) }, "restore"},
		{"key damaged", t0, func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, pki.CAKeyFile), []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), 0o600)
		}, "ca.key"},
		{"pair mismatch", t0, func(t *testing.T, dir string) {
			other := t.TempDir()
			if _, err := pki.LoadOrCreateCA(other, "x", t0); err != nil {
				t.Fatal(err)
			}
			b, _ := os.ReadFile(filepath.Join(other, pki.CACertFile))
			os.WriteFile(filepath.Join(dir, pki.CACertFile), b, 0o644)
		}, "do not belong together"},
		{"expired", t0.Add(11 * 365 * 24 * time.Hour), nil, "expired"},
		{"clock behind", t0.Add(-48 * time.Hour), nil, "clock"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, dir := newCA(t, t0)
			if tc.damage != nil {
				tc.damage(t, dir)
			}
			_, err := pki.LoadOrCreateCA(dir, "mail.a.example", tc.now)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one that says %q", err, tc.want)
			}
		})
	}
}

func serverCert(t *testing.T, ca *pki.CA, dir string, now time.Time, hosts ...string) tls.Certificate {
	t.Helper()
	c, err := ca.ServerCertificate(dir, hosts, now)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestServerCertificate(t *testing.T) {
	t.Parallel()
	ca, dir := newCA(t, t0)
	c := serverCert(t, ca, dir, t0, "localhost", "127.0.0.1", "::1", "mail.a.example")
	leaf := c.Leaf
	if len(leaf.ExtKeyUsage) != 1 || leaf.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth {
		t.Errorf("ExtKeyUsage %v", leaf.ExtKeyUsage)
	}
	if leaf.IsCA {
		t.Error("leaf is a CA")
	}
	if got := leaf.NotAfter.Sub(t0); got != 397*24*time.Hour {
		t.Errorf("lifetime %v, want 397 days", got)
	}
	for _, h := range []string{"localhost", "127.0.0.1", "::1", "mail.a.example"} {
		if err := leaf.VerifyHostname(h); err != nil {
			t.Errorf("%s: %v", h, err)
		}
	}
	if leaf.VerifyHostname("b.example") == nil {
		t.Error("leaf valid for a host it was not issued for")
	}
	if m := mode(t, filepath.Join(dir, pki.TLSKeyFile)); m != 0o600 {
		t.Errorf("tls.key mode %04o", m)
	}
	if _, err := tls.LoadX509KeyPair(filepath.Join(dir, pki.TLSCertFile), filepath.Join(dir, pki.TLSKeyFile)); err != nil {
		t.Errorf("written files do not load: %v", err)
	}

	if _, err := ca.ServerCertificate(dir, nil, t0); err == nil {
		t.Error("no hosts accepted")
	}
	if _, err := ca.ServerCertificate(dir, []string{"Bad_Host"}, t0); err == nil {
		t.Error("bad host accepted")
	}
}

func TestServerCertificateReuseAndRenewal(t *testing.T) {
	t.Parallel()
	day := 24 * time.Hour
	hosts := []string{"localhost", "127.0.0.1"}
	serial := func(c tls.Certificate) string { return c.Leaf.SerialNumber.String() }

	ca, dir := newCA(t, t0)
	first := serverCert(t, ca, dir, t0, hosts...)

	if c := serverCert(t, ca, dir, t0.Add(100*day), hosts...); serial(c) != serial(first) {
		t.Error("valid certificate not reused on restart")
	}
	if c := serverCert(t, ca, dir, t0.Add(200*day), "localhost"); serial(c) != serial(first) {
		t.Error("certificate covering fewer hosts not reused")
	}
	// 31 days before expiry: still reused; 29 days before: renewed.
	if c := serverCert(t, ca, dir, t0.Add(366*day), hosts...); serial(c) != serial(first) {
		t.Error("certificate with 31 days left not reused")
	}
	renewed := serverCert(t, ca, dir, t0.Add(368*day), hosts...)
	if serial(renewed) == serial(first) {
		t.Fatal("certificate with 29 days left not renewed")
	}
	if got := renewed.Leaf.NotAfter.Sub(t0.Add(368 * day)); got != 397*day {
		t.Errorf("renewed lifetime %v", got)
	}
	if c := serverCert(t, ca, dir, t0.Add(369*day), hosts...); serial(c) != serial(renewed) {
		t.Error("renewed certificate not reused")
	}

	// A new host name, a damaged file, an exposed key or another CA: a new certificate.
	cur := renewed
	for _, tc := range []struct {
		name   string
		hosts  []string
		damage func()
	}{
		{"new host", []string{"localhost", "127.0.0.1", "mail.a.example"}, nil},
		{"damaged certificate", nil, func() { os.WriteFile(filepath.Join(dir, pki.TLSCertFile), []byte("junk"), 0o644) }},
		{"exposed key", nil, func() { os.Chmod(filepath.Join(dir, pki.TLSKeyFile), 0o644) }},
		{"other CA", nil, func() {
			other, odir := newCA(t, t0)
			serverCert(t, other, odir, t0.Add(368*day), hosts...)
			for _, f := range []string{pki.TLSCertFile, pki.TLSKeyFile} {
				b, _ := os.ReadFile(filepath.Join(odir, f))
				os.WriteFile(filepath.Join(dir, f), b, 0o600)
			}
		}},
	} {
		if tc.damage != nil {
			tc.damage()
		}
		h := tc.hosts
		if h == nil {
			h = hosts
		}
		c := serverCert(t, ca, dir, t0.Add(369*day), h...)
		if serial(c) == serial(cur) {
			t.Errorf("%s: certificate not replaced", tc.name)
		}
		if _, err := c.Leaf.Verify(x509.VerifyOptions{Roots: ca.CertPool(), CurrentTime: t0.Add(369 * day)}); err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
		if m := mode(t, filepath.Join(dir, pki.TLSKeyFile)); m != 0o600 {
			t.Errorf("%s: tls.key mode %04o", tc.name, m)
		}
		cur = c
	}
}

func TestServerCertificateNotPastCA(t *testing.T) {
	t.Parallel()
	ca, dir := newCA(t, t0)
	now := ca.Certificate().NotAfter.Add(-100 * 24 * time.Hour)
	c := serverCert(t, ca, dir, now, "localhost")
	if !c.Leaf.NotAfter.Equal(ca.Certificate().NotAfter) {
		t.Errorf("leaf expires %v, CA %v", c.Leaf.NotAfter, ca.Certificate().NotAfter)
	}
}

// handshake runs one TLS handshake over loopback between a server with cfg and a client.
func handshake(t *testing.T, server *tls.Config, client *tls.Config) (tls.ConnectionState, error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		done <- tls.Server(conn, server).Handshake()
	}()
	d := &net.Dialer{Timeout: 10 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", ln.Addr().String(), client)
	var state tls.ConnectionState
	if err == nil {
		state = conn.ConnectionState()
		conn.Close()
	}
	if serr := <-done; err == nil && serr != nil {
		err = serr
	}
	return state, err
}

func TestTLSHandshake(t *testing.T) {
	t.Parallel()
	now := time.Now()
	ca, dir := newCA(t, now)
	server := pki.TLSConfig(serverCert(t, ca, dir, now, "localhost", "127.0.0.1", "::1"))

	state, err := handshake(t, server, &tls.Config{RootCAs: ca.CertPool(), ServerName: "localhost"})
	if err != nil {
		t.Fatalf("handshake with the CA pool: %v", err)
	}
	if state.Version != tls.VersionTLS13 {
		t.Errorf("negotiated %s, want TLS 1.3", tls.VersionName(state.Version))
	}
	if _, err := handshake(t, server, &tls.Config{RootCAs: ca.CertPool(), ServerName: "127.0.0.1"}); err != nil {
		t.Errorf("handshake by IP address: %v", err)
	}

	_, err = handshake(t, server, &tls.Config{RootCAs: x509.NewCertPool(), ServerName: "localhost"})
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Errorf("handshake with an empty pool: %v, want an unknown authority", err)
	}
	other, _ := newCA(t, now)
	if _, err := handshake(t, server, &tls.Config{RootCAs: other.CertPool(), ServerName: "localhost"}); err == nil {
		t.Error("handshake trusting another local CA succeeded")
	}
	if _, err := handshake(t, server, &tls.Config{RootCAs: ca.CertPool(), ServerName: "mail.b.example"}); err == nil {
		t.Error("handshake for a name not in the certificate succeeded")
	}
}

func TestTLSVersionsAndSuites(t *testing.T) {
	t.Parallel()
	now := time.Now()
	ca, dir := newCA(t, now)
	server := pki.TLSConfig(serverCert(t, ca, dir, now, "localhost"))
	client := func(min, max uint16, suites ...uint16) *tls.Config {
		return &tls.Config{RootCAs: ca.CertPool(), ServerName: "localhost", MinVersion: min, MaxVersion: max, CipherSuites: suites}
	}

	if _, err := handshake(t, server, client(tls.VersionTLS10, tls.VersionTLS11)); err == nil || !strings.Contains(err.Error(), "protocol version not supported") {
		t.Errorf("TLS 1.1 client: %v, want the server to refuse the version", err)
	}
	for _, s := range []uint16{
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	} {
		state, err := handshake(t, server, client(tls.VersionTLS12, tls.VersionTLS12, s))
		if err != nil {
			t.Errorf("TLS 1.2 with %s: %v", tls.CipherSuiteName(s), err)
		} else if state.CipherSuite != s || state.Version != tls.VersionTLS12 {
			t.Errorf("negotiated %s %s", tls.VersionName(state.Version), tls.CipherSuiteName(state.CipherSuite))
		}
	}
	for _, s := range []uint16{
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA,
		tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA,
		tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256,
	} {
		if _, err := handshake(t, server, client(tls.VersionTLS12, tls.VersionTLS12, s)); err == nil || !strings.Contains(err.Error(), "handshake failure") {
			t.Errorf("TLS 1.2 with %s: %v, want the server to refuse the suite", tls.CipherSuiteName(s), err)
		}
	}
}

func TestIssueUser(t *testing.T) {
	t.Parallel()
	ca, _ := newCA(t, t0)
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := ca.IssueUser("alice@a.example", pub, t0)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.EmailAddresses) != 1 || c.EmailAddresses[0] != "alice@a.example" || len(c.DNSNames) != 0 {
		t.Errorf("SANs: email %v DNS %v", c.EmailAddresses, c.DNSNames)
	}
	if !c.PublicKey.(ed25519.PublicKey).Equal(pub) {
		t.Error("certificate binds another key")
	}
	at := t0.Add(24 * time.Hour)
	if _, err := c.Verify(x509.VerifyOptions{Roots: ca.CertPool(), CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection}}); err != nil {
		t.Errorf("does not verify for e-mail protection: %v", err)
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: ca.CertPool(), CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
		t.Error("user certificate verifies for server authentication")
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: ca.CertPool(), CurrentTime: t0.Add(731 * 24 * time.Hour), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageEmailProtection}}); err == nil {
		t.Error("user certificate valid after two years")
	}

	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if _, err := ca.IssueUser("bob@b.example", ecKey.Public(), t0); err != nil {
		t.Errorf("ECDSA key: %v", err)
	}
	for _, bad := range []string{"", "alice", "alice@", "Alice <alice@a.example>", "alice@A.EXAMPLE", "élise@a.example"} {
		if _, err := ca.IssueUser(bad, pub, t0); err == nil {
			t.Errorf("address %q accepted", bad)
		}
	}
}

func TestEnsurePrivateDir(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	nested := filepath.Join(base, "a", "b")
	if err := pki.EnsurePrivateDir(nested); err != nil {
		t.Fatal(err)
	}
	if m := mode(t, nested); m != 0o700 {
		t.Errorf("created with mode %04o", m)
	}
	if err := pki.EnsurePrivateDir(nested); err != nil {
		t.Errorf("second call: %v", err)
	}

	open := filepath.Join(base, "open")
	os.Mkdir(open, 0o755)
	chmod(t, open, 0o755)
	if err := pki.EnsurePrivateDir(open); err != nil {
		t.Errorf("0755 directory refused: %v", err)
	}
	for _, m := range []os.FileMode{0o775, 0o757, 0o777} {
		chmod(t, open, m)
		err := pki.EnsurePrivateDir(open)
		var perr *pki.PermissionError
		if !errors.As(err, &perr) || !strings.Contains(err.Error(), "chmod go-w "+open) {
			t.Errorf("mode %04o: err = %v, want a PermissionError saying chmod go-w", m, err)
		}
	}

	file := filepath.Join(base, "file")
	os.WriteFile(file, nil, 0o600)
	if err := pki.EnsurePrivateDir(file); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("file accepted as a directory: %v", err)
	}
}
