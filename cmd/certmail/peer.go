package main

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"certmail/config"
	"certmail/pki"
)

// runPeer manages the trust store: the peer agents this agent relays to and accepts evidence
// from. The store is a file in the data directory signed with the agent's key.
func runPeer(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	flags := newFlagSet("peer", "add NAME --key VKEY|--key-file FILE --relay HOST:PORT --domain DOMAIN... [--tls-cert FILE | --tls-spki PIN] | list | remove NAME [--config FILE]", `
Manage the trust store: the peer agents this agent relays to, and whose acknowledgements and
reports it accepts (in the shape of PEC's provider index). The store is peers.note in the data
directory, signed with the agent's key; every change signs a new version with a higher serial.
  add NAME     trust the agent NAME (its host name) for the domains given, or change it
  list         list the trusted peers
  remove NAME  stop trusting NAME`, stderr)
	cfgPath := flags.String("config", "", "the configuration `FILE` (default: zero configuration)")
	key := flags.String("key", "", "with add: the peer's signed-note verifier `VKEY`")
	keyFile := flags.String("key-file", "", "with add: read the peer's verifier key from `FILE` (its agent.pub)")
	relay := flags.String("relay", "", "with add: the `HOST:PORT` where the peer takes relays over SMTP")
	var domains stringList
	flags.Var(&domains, "domain", "with add: a mail `DOMAIN` the peer serves; repeatable, or comma-separated")
	tlsCert := flags.String("tls-cert", "", "with add: pin the TLS key of the certificate in PEM `FILE`")
	tlsPin := flags.String("tls-spki", "", "with add: pin the TLS key by its `PIN` (sha256:HEX of the SubjectPublicKeyInfo)")
	pos, code, ok := parseInterspersed(flags, args)
	if !ok {
		return code
	}
	if len(pos) == 0 {
		return usageError(stderr, "peer", "name an action: add, list or remove")
	}
	action, rest := pos[0], pos[1:]
	want := map[string]int{"add": 1, "list": 0, "remove": 1}
	n, known := want[action]
	if !known {
		return usageError(stderr, "peer", "unknown action %q", action)
	}
	if len(rest) != n {
		return usageError(stderr, "peer", "%s takes %d name(s), got %d", action, n, len(rest))
	}
	if action != "add" && (*key != "" || *keyFile != "" || *relay != "" || len(domains) > 0 || *tlsCert != "" || *tlsPin != "") {
		return usageError(stderr, "peer", "--key, --relay, --domain and --tls-* go with add only")
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "certmail peer: %v\n", err)
		return exitFail
	}
	id, _, err := pki.LoadOrCreateAgentKey(cfg.DataDir, cfg.Hostname, rand.Reader)
	if err != nil {
		fmt.Fprintf(stderr, "certmail peer: %v\n", err)
		return exitFail
	}
	ts, err := pki.LoadTrustStore(cfg.DataDir, id.Verifier)
	if err != nil {
		fmt.Fprintf(stderr, "certmail peer: %v\n", err)
		return exitFail
	}
	switch action {
	case "list":
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "PEER\tRELAY\tDOMAINS\tTLS PIN")
		for _, p := range ts.Peers {
			pin := p.TLSSPKI
			if pin == "" {
				pin = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", p.Name, p.Relay, strings.Join(p.Domains, ","), pin)
		}
		tw.Flush()
		if len(ts.Peers) > 0 {
			fmt.Fprintf(stdout, "\nserial %d, signed by %s at %s\n", ts.Serial, ts.Operator, ts.Issued.Format(time.RFC3339))
		}
		return exitOK
	case "remove":
		err = ts.Remove(rest[0])
	case "add":
		p := pki.Peer{Name: rest[0], Key: strings.TrimSpace(*key), Relay: *relay, TLSSPKI: *tlsPin}
		for _, d := range domains {
			for _, x := range strings.Split(d, ",") {
				if x = strings.TrimSpace(x); x != "" {
					p.Domains = append(p.Domains, x)
				}
			}
		}
		if *keyFile != "" {
			if *key != "" {
				return usageError(stderr, "peer", "give --key or --key-file, not both")
			}
			b, err := os.ReadFile(*keyFile)
			if err != nil {
				return usageError(stderr, "peer", "%v", err)
			}
			p.Key = strings.TrimSpace(string(b))
		}
		if *tlsCert != "" {
			if *tlsPin != "" {
				return usageError(stderr, "peer", "give --tls-cert or --tls-spki, not both")
			}
			if p.TLSSPKI, err = certPin(*tlsCert); err != nil {
				return usageError(stderr, "peer", "%v", err)
			}
		}
		err = ts.Put(p)
	}
	if err == nil {
		err = pki.SaveTrustStore(cfg.DataDir, ts, id.Signer, time.Now())
	}
	if err != nil {
		fmt.Fprintf(stderr, "certmail peer: %v\n", err)
		return exitFail
	}
	fmt.Fprintf(stdout, "trust store saved: %d peer(s), serial %d\n", len(ts.Peers), ts.Serial)
	return exitOK
}

// certPin reads a PEM certificate and returns the pin of its key.
func certPin(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return "", fmt.Errorf("%s: no PEM certificate", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return pki.SPKIPin(c), nil
}
