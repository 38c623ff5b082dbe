// Package password hashes and checks secrets people choose — account passwords and message
// passwords — with argon2id (RFC 9106), stored in the PHC string format:
//
//	$argon2id$v=19$m=65536,t=2,p=2$<salt>$<hash>
//
// It never logs, stores or returns a password, only its hash.
package password

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Params are argon2id's costs. Default follows RFC 9106 §4's second recommended option scaled
// to a 2-core server: 64 MiB, 2 passes, 2 lanes.
type Params struct {
	Memory  uint32 // KiB
	Time    uint32
	Threads uint8
}

// Default is what new hashes use.
var Default = Params{Memory: 64 * 1024, Time: 2, Threads: 2}

// ErrMismatch is returned when a password does not match its hash.
var ErrMismatch = errors.New("password: mismatch")

// MinLength is the shortest password accepted (NIST SP 800-63B §5.1.1.2 asks for at least 8).
const MinLength = 8

// Hash returns the PHC string of pw under p, with a fresh 16-byte salt from r (crypto/rand when nil).
func Hash(pw string, p Params, r io.Reader) (string, error) {
	if len(pw) < MinLength {
		return "", fmt.Errorf("password: shorter than %d characters", MinLength)
	}
	if r == nil {
		r = rand.Reader
	}
	salt := make([]byte, 16)
	if _, err := io.ReadFull(r, salt); err != nil {
		return "", fmt.Errorf("password: salt: %w", err)
	}
	key := argon2.IDKey([]byte(pw), salt, p.Time, p.Memory, p.Threads, 32)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.Memory, p.Time, p.Threads,
		b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// Check reports nil when pw matches the PHC string encoded, ErrMismatch when it does not, and
// another error when encoded is malformed.
func Check(encoded, pw string) error {
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return errors.New("password: not an argon2id PHC string")
	}
	var version int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return errors.New("password: unsupported argon2 version")
	}
	var p Params
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.Memory, &p.Time, &p.Threads); err != nil {
		return errors.New("password: malformed parameters")
	}
	if p.Memory > 1<<18 || p.Memory < 8 || p.Time > 10 || p.Threads == 0 || p.Time == 0 {
		return errors.New("password: parameters out of range")
	}
	b64 := base64.RawStdEncoding
	salt, err1 := b64.DecodeString(parts[4])
	want, err2 := b64.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(salt) < 8 || len(want) < 16 {
		return errors.New("password: malformed salt or hash")
	}
	got := argon2.IDKey([]byte(pw), salt, p.Time, p.Memory, p.Threads, uint32(len(want)))
	if subtle.ConstantTimeCompare(got, want) != 1 {
		return ErrMismatch
	}
	return nil
}
