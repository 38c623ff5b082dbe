package evidence

import (
	"crypto/ed25519"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// Checked is a bundle whose signatures and key bindings were checked: what a judge weighs.
// Verdict is started: it holds the label, the signature problems and the notices, and the judge
// completes it.
type Checked struct {
	Bundle  *Bundle
	OK      []bool // OK[i]: note i is signed by every signer it needs, with trusted keys
	Verdict *Verdict
	// Logged[i]: note i is proven in the bundle's checkpoint; LogTime is that checkpoint's log
	// time (its agent's timestamped cosignature), zero when it has none. Each logged note
	// existed by LogTime, whatever time it states.
	Logged  []bool
	LogTime time.Time
}

// Good returns the notes whose signatures stand, with their 1-based positions.
func (c *Checked) Good() (notes []*Note, pos []int) {
	for i, n := range c.Bundle.Notes {
		if c.OK[i] {
			notes = append(notes, n)
			pos = append(pos, i+1)
		}
	}
	return notes, pos
}

// Check verifies every note of the bundle. Agent keys are trusted when pinned; with no pinned
// keys, the agent keys in the bundle are taken as given and the verdict says so. A user's key
// is trusted only when pinned or bound to the user's address by a KEY record that a trusted
// agent signed, with a time not after the note it verifies.
//
// The signatures are verified together, as one batch (see sigBatch).
func (b *Bundle) Check(pinned *Keys) *Checked {
	return CheckBundles([]*Bundle{b}, pinned)[0]
}

// CheckBundles checks many bundles with the same pinned keys: each gets exactly what Check gives
// it, and the signatures of all are verified in batches, which costs a fraction of verifying
// them one by one. A forged or damaged signature fails only the note that carries it.
func CheckBundles(bundles []*Bundle, pinned *Keys) []*Checked {
	sigs := newSigBatch(len(bundles))
	trusts := make([]bundleTrust, len(bundles))
	known := keyCache{}
	var pinnedAgents *Keys // the same for every bundle, and only read
	if pinned != nil {
		none, _ := NewKeys()
		pinnedAgents = none.union(pinned)
	}
	for i, b := range bundles {
		trusts[i] = b.trust(pinned, pinnedAgents, known)
		b.queueSignatures(i, trusts[i], sigs)
	}
	sigs.run()
	out := make([]*Checked, len(bundles))
	for i, b := range bundles {
		out[i] = b.check(pinned, trusts[i], sigs, known)
	}
	return out
}

// bundleTrust is the keys a bundle's check may use before any signature is checked: the agents'
// keys, and those with the user keys that are pinned or that some KEY record of the bundle
// names (whether that record stands is known only after its check).
type bundleTrust struct {
	agents    *Keys
	candidate *Keys
	fromSelf  bool // the agents' keys were taken from the bundle
}

// keyCache holds the verifier keys already checked during one CheckBundles, by their text: the
// agents' keys are in every bundle.
type keyCache map[string]*trustedKey

// add adds vkey to k, checking it once per cache; a malformed key is left out, as in Check.
func (c keyCache) add(k *Keys, vkey string) {
	t, seen := c[vkey]
	if !seen {
		if checkVerifierKey(vkey) == nil {
			v, _ := note.NewVerifier(vkey)
			pub, _ := PublicKey(vkey)
			t = &trustedKey{v, pub}
		}
		c[vkey] = t
	}
	if t != nil {
		k.add(vkey, *t)
	}
}

// trust gives the keys b's check may use: pinnedAgents, a copy of pinned, when keys are pinned.
func (b *Bundle) trust(pinned, pinnedAgents *Keys, known keyCache) bundleTrust {
	agents := pinnedAgents
	if pinned == nil {
		agents, _ = NewKeys()
		for _, k := range b.Keys {
			if !strings.Contains(KeyID(k), "@") {
				known.add(agents, k)
			}
		}
	}
	users, _ := NewKeys()
	for _, k := range b.Keys {
		if !strings.Contains(KeyID(k), "@") {
			continue
		}
		named := slices.ContainsFunc(b.Notes, func(n *Note) bool { return n.Record.Type == KEY && n.Record.Key == k })
		if named || pinned != nil && contains(pinned.list, k) {
			known.add(users, k)
		}
	}
	return bundleTrust{agents: agents, candidate: agents.union(users), fromSelf: pinned == nil}
}

// queueSignatures adds to sigs every signature the check of b may verify.
func (b *Bundle) queueSignatures(bundle int, t bundleTrust, sigs *sigBatch) {
	for _, n := range b.Notes {
		keys := t.candidate
		if n.Record.Type == KEY {
			keys = t.agents
		} else if !n.Record.Label.IsZero() && n.Record.Label != b.Label {
			continue // refused before its signatures are looked at
		}
		for i, s := range n.Sigs {
			if pub, ok := keys.publicKey(s.Name, s.Hash); ok {
				sigs.add(bundle, n, i, pub)
			}
		}
	}
	if b.Checkpoint != nil {
		// The checkpoint's signatures by the agents' keys, as checkLog will verify them; a
		// checkpoint that does not open is refused there.
		_, _, _ = openCheckpoint(b.Checkpoint, agentKeys(t.agents), sigs.queueCheckpoint(b, bundle))
	}
}

// agentKeys are the keys of k that are not users': those that may sign the log's checkpoint.
func agentKeys(k *Keys) []string {
	var out []string
	for _, v := range k.list {
		if !strings.Contains(KeyID(v), "@") {
			out = append(out, v)
		}
	}
	return out
}

func (b *Bundle) check(pinned *Keys, t bundleTrust, sigs *sigBatch, known keyCache) *Checked {
	v := &Verdict{Valid: true, Label: b.Label.String(), Outcome: OutcomeInvalid}
	c := &Checked{Bundle: b, OK: make([]bool, len(b.Notes)), Verdict: v}
	if t.fromSelf {
		v.Notices = append(v.Notices, "the agents' keys were taken from the bundle itself; pin the keys you trust (verify --key) to check who the agents are")
	}
	agents := t.agents
	verify := func(n *Note) func(ed25519.PublicKey, int) bool {
		return func(pub ed25519.PublicKey, i int) bool { return sigs.verify(n, i, pub) }
	}

	// First the KEY records, with agent keys only: they decide which user keys count.
	bindings := map[string][]*Record{} // verifier key -> KEY records binding it
	for i, n := range b.Notes {
		if n.Record.Type != KEY {
			continue
		}
		if err := n.check(agents, verify(n)); err != nil {
			v.Fail(i+1, KEY, "signature", "%v", err)
			continue
		}
		c.OK[i] = true
		bindings[n.Record.Key] = append(bindings[n.Record.Key], n.Record)
	}

	// One key set for every other note: the agents, and the user keys that are pinned or bound
	// by a trusted KEY record. Whether a binding was in force when a user signed is checked
	// per note below.
	users, _ := NewKeys()
	for _, k := range b.Keys {
		if strings.Contains(KeyID(k), "@") && (pinned != nil && contains(pinned.list, k) || len(bindings[k]) > 0) {
			known.add(users, k)
		}
	}
	keys := agents.union(users)
	for i, n := range b.Notes {
		r := n.Record
		if r.Type == KEY {
			continue
		}
		if !r.Label.IsZero() && r.Label != b.Label {
			v.Fail(i+1, r.Type, "label", "note is for label %s, the bundle for %s", r.Label, b.Label)
			continue
		}
		if err := n.check(keys, verify(n)); err != nil {
			if userSigned(r) && !keys.Has(r.SignerNames()[0]) {
				v.Fail(i+1, r.Type, "key binding", "no trusted KEY record binds a key of %s", r.SignerNames()[0])
				continue
			}
			v.Fail(i+1, r.Type, "signature", "%v", err)
			continue
		}
		if userSigned(r) && !userKeyInForce(n, b.Keys, pinned, bindings) {
			v.Fail(i+1, r.Type, "key binding", "the key of %s that signed was not bound to that address at or before %s", r.SignerNames()[0], FormatTime(r.Time))
			continue
		}
		c.OK[i] = true
	}
	// The log's checkpoint must be signed by an agent, never a user.
	b.checkLog(agentKeys(agents), c, sigs.verifyCheckpoint(b))
	return c
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// userSigned reports whether a record is signed by a user's key rather than an agent's.
func userSigned(r *Record) bool {
	s := schemas[r.Type]
	return s.signer == byRecipient || s.signer == bySender
}

// userKeyInForce reports whether n carries a signature by a user key that is pinned, or that a
// trusted KEY record bound to the signer's address from a time not after the note's own time
// (tokens without a time accept any binding).
func userKeyInForce(n *Note, bundleKeys []string, pinned *Keys, bindings map[string][]*Record) bool {
	r := n.Record
	want := r.SignerNames()[0]
	for _, k := range bundleKeys {
		id := KeyID(k)
		if !strings.HasPrefix(id, want+"+") || !n.hasSigBy(id) {
			continue
		}
		if pinned != nil && contains(pinned.List(), k) {
			return true
		}
		for _, kr := range bindings[k] {
			if mustKeyName(kr.Subject) == want && (r.Time.IsZero() || !kr.Time.After(r.Time)) {
				return true
			}
		}
	}
	return false
}

// hasSigBy reports whether n has a signature line by the key "name+hash".
func (n *Note) hasSigBy(id string) bool {
	for _, s := range n.Sigs {
		// "%08x" without fmt: the 33-bit value's hex digits after its leading 1.
		if len(id) == len(s.Name)+9 && id[:len(s.Name)] == s.Name && id[len(s.Name)] == '+' &&
			id[len(s.Name)+1:] == strconv.FormatUint(uint64(s.Hash)|1<<32, 16)[1:] {
			return true
		}
	}
	return false
}

// Signer returns who signed r, as a person reads it: the agents' host names, or the user's
// address (not its escaped key name).
func (r *Record) Signer() string {
	switch schemas[r.Type].signer {
	case byRecipient:
		return r.Recipient
	case bySender:
		return r.Sender
	}
	return strings.Join(r.SignerNames(), " and ")
}

// Describe says in plain words what a valid record establishes.
func (r *Record) Describe() string {
	switch r.Type {
	case COP:
		return fmt.Sprintf("%s accepted a message from %s for %s (content %s), to be delivered or reported by %s", r.Agent, r.Sender, r.Recipient, short(r.Content), FormatTime(r.Deadline))
	case NAC:
		return fmt.Sprintf("%s refused the submission of %s: %s (%s)", r.Agent, r.Sender, r.Reason, r.Detail)
	case ACK:
		return fmt.Sprintf("%s took charge of the item for %s from %s", r.Agent, r.Recipient, r.From)
	case NTF:
		return fmt.Sprintf("%s notified %s that an item waits (commitment %s)", r.Agent, r.Recipient, short(r.Commitment))
	case DLV:
		return fmt.Sprintf("%s attests that %s authenticated (%s) from %s and accepted the item", r.Agent, r.Recipient, r.Method, r.Client)
	case REJ:
		return fmt.Sprintf("%s attests that %s refused the item (%s)", r.Agent, r.Recipient, r.Reason)
	case RET:
		return fmt.Sprintf("%s released the content to %s at %s", r.Agent, r.Recipient, r.Client)
	case ROD:
		return fmt.Sprintf("%s reports delivery to %s, countersigned by %s", r.Agent, r.Recipient, r.Origin)
	case WRN:
		return fmt.Sprintf("%s warned %s that delivery to %s is not yet confirmed before %s", r.Agent, r.Sender, r.Recipient, FormatTime(r.Deadline))
	case NDN:
		return fmt.Sprintf("%s gives notice that the item for %s was not delivered (reason %s)", r.Agent, r.Recipient, r.Reason)
	case RTR:
		return fmt.Sprintf("%s withdrew the item for %s before pickup", r.Sender, r.Recipient)
	case VIR:
		return fmt.Sprintf("%s refused content from %s as malware: %s", r.Agent, r.Sender, r.Detail)
	case PUB:
		return fmt.Sprintf("%s published the key for ciphertext %s", r.Agent, short(r.Ciphertext))
	case KEY:
		return fmt.Sprintf("%s binds key %s to %s", r.Agent, KeyID(r.Key), r.Subject)
	case CODBasic, CODNSR, CODIP:
		return fmt.Sprintf("%s signed for delivery of the item from %s", r.Recipient, r.Agent)
	case CMPNRO, CMP2NRO:
		return fmt.Sprintf("%s is the origin of content %s for %s", r.Sender, short(r.Content), r.Recipient)
	case CMPREQ, CMP2REQ:
		return fmt.Sprintf("%s committed to receive the item from %s", r.Recipient, r.Sender)
	case CMPNRD, CMP2NRD:
		return fmt.Sprintf("%s delivered the item from %s to %s", r.Agent, r.Sender, r.Recipient)
	case SRREQ:
		return fmt.Sprintf("%s asked %s to publish the key of ciphertext %s at %s by %s", r.Recipient, r.Sender, short(r.Ciphertext), r.Location, FormatTime(r.Deadline))
	case SRKEYRCPT:
		return fmt.Sprintf("%s received the key %s of ciphertext %s", r.Recipient, short(r.KeyHash), short(r.Ciphertext))
	case AGHPRECEIPT:
		return fmt.Sprintf("%s released the key %s of exchange %s to %s (mode %s)", r.Agent, short(r.KeyHash), short(r.Exchange), r.Recipient, r.Mode)
	}
	return string(r.Type)
}

func short(h Hash) string { return h.String()[:len("sha256:")+12] + "…" }
