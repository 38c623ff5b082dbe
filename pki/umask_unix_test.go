//go:build unix

package pki_test

import (
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"certmail/pki"
)

// TestModesWhateverTheUmask creates every key file in a child process (the umask is
// process-wide) under a permissive and a strict umask, and checks the modes.
func TestModesWhateverTheUmask(t *testing.T) {
	t.Parallel()
	for _, umask := range []int{0o000, 0o022, 0o277} {
		t.Run(fmt.Sprintf("umask %04o", umask), func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "data")
			cmd := exec.Command(os.Args[0], "-test.run=^TestUmaskChild$", "-test.v")
			cmd.Env = append(os.Environ(), "PKI_UMASK_CHILD="+strconv.Itoa(umask)+":"+dir)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("child: %v\n%s", err, out)
			}
			for name, want := range map[string]os.FileMode{
				".":              0o700,
				pki.AgentKeyFile: 0o600,
				pki.AgentPubFile: 0o644,
				pki.CAKeyFile:    0o600,
				pki.CACertFile:   0o644,
				pki.TLSKeyFile:   0o600,
				pki.TLSCertFile:  0o644,
			} {
				if m := mode(t, filepath.Join(dir, name)); m != want {
					t.Errorf("%s: mode %04o, want %04o", name, m, want)
				}
			}
		})
	}
}

func TestUmaskChild(t *testing.T) {
	arg := os.Getenv("PKI_UMASK_CHILD")
	if arg == "" {
		t.Skip("run by TestModesWhateverTheUmask")
	}
	m, dir, _ := strings.Cut(arg, ":")
	umask, err := strconv.Atoi(m)
	if err != nil {
		t.Fatal(err)
	}
	syscall.Umask(umask)
	if _, _, err := pki.LoadOrCreateAgentKey(dir, "localhost", rand.Reader); err != nil {
		t.Fatal(err)
	}
	ca, err := pki.LoadOrCreateCA(dir, "localhost", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ca.ServerCertificate(dir, []string{"localhost"}, time.Now()); err != nil {
		t.Fatal(err)
	}
}
