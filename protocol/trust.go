package protocol

import (
	"cmp"
	"fmt"
	"slices"
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

// bundle assembles the bundle of label l: the notes each once, in the reading order rank gives
// their types, with the verifier keys of every signer the trust store knows and of every user a
// KEY record binds.
func (t *trust) bundle(l evidence.Label, notes []*evidence.Note, rank func(evidence.Type) int) *evidence.Bundle {
	b := &evidence.Bundle{Label: l}
	seen := map[evidence.Hash]bool{}
	for _, n := range notes {
		if n == nil || seen[n.Leaf()] {
			continue
		}
		seen[n.Leaf()] = true
		b.Notes = append(b.Notes, n)
	}
	slices.SortStableFunc(b.Notes, func(x, y *evidence.Note) int {
		return cmp.Compare(rank(x.Record.Type), rank(y.Record.Type))
	})
	for _, n := range b.Notes {
		for _, name := range n.Record.SignerNames() {
			if v, ok := t.byName[name]; ok {
				b.AddKey(v)
			}
		}
		if n.Record.Type == evidence.KEY {
			b.AddKey(n.Record.Key)
		}
	}
	return b
}
