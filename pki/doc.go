// Package pki holds the keys a delivery agent starts from: its signed-note key (the one that
// signs evidence, DESIGN.md §5), a local X.509 CA with the TLS certificate it issues for the
// agent's listeners, S/MIME user certificates, and the TLS settings every listener shares.
//
// Keys live as files in the data directory, private ones with mode 0600 in a directory nobody
// else may write to. A key that is found is loaded and checked, never silently replaced: the
// agent key names the agent in every piece of evidence it has signed, so a missing, exposed,
// renamed or damaged key stops the agent with a message saying what to do. Only files that can
// be derived again (agent.pub, the TLS leaf) are rewritten.
//
// This package never logs and never prints key material.
package pki
