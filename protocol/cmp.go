package protocol

import "certmail/evidence"

// judgeCMP is written by the engineer who owns cmp.go; this placeholder keeps the package building.
func judgeCMP(c *evidence.Checked, p evidence.Protocol) {
	c.Verdict.Fail(0, "", "judge", "the judge of this protocol is not written yet")
}
