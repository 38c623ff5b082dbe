// Package swakstest finds swaks, the SMTP client of the submission tests, and checks that it can
// speak TLS. Debian's swaks package only recommends libnet-ssleay-perl, and without it swaks
// exits at the first STARTTLS ("TLS not available"): a test would then fail for a missing
// package rather than for what it checks.
package swakstest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// Path returns the path of a swaks that speaks TLS. When there is none, the test is skipped,
// or fails under CERTMAIL_TEST_REQUIRE_ALL=1.
func Path(t testing.TB) string {
	t.Helper()
	path, err := find()
	if err != nil {
		if os.Getenv("CERTMAIL_TEST_REQUIRE_ALL") == "1" {
			t.Fatalf("%v (CERTMAIL_TEST_REQUIRE_ALL=1): install it as .ci/run does", err)
		}
		t.Skipf("%v; install it to run this test", err)
	}
	return path
}

func find() (string, error) {
	path, err := exec.LookPath("swaks")
	if err != nil {
		return "", errors.New("swaks is not installed")
	}
	// --support lists what this swaks can do, "=== TLS supported" among them when it has
	// Net::SSLeay; it prints what it lacks on stderr.
	out, err := exec.Command(path, "--support").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "=== TLS supported") {
		return "", fmt.Errorf("swaks cannot speak TLS (Debian's libnet-ssleay-perl): %s", strings.TrimSpace(string(out)))
	}
	return path, nil
}
