package protocol

import (
	"fmt"
	"strings"

	"certmail/evidence"
)

// trust is a party's trust store: the agents' verifier keys it accepts signatures from.
type trust struct {
	keys   *evidence.Keys
	byName map[string]string
}

func newTrust(vkeys []string) (*trust, error) {
	k, err := evidence.NewKeys(vkeys...)
	if err != nil {
		return nil, err
	}
	t := &trust{keys: k, byName: map[string]string{}}
	for _, v := range k.List() {
		name, _, _ := strings.Cut(v, "+")
		if strings.Contains(name, "@") {
			return nil, fmt.Errorf("protocol: trust store: %s is a user's key, not an agent's", evidence.KeyID(v))
		}
		t.byName[name] = v
	}
	return t, nil
}
