package config

// Example returns a configuration file that documents every field. Its values are the
// defaults, so loading it gives Default(); lines commented out show a default derived from
// other fields, which follows them when they change. The tests hold it to both.
func Example() string { return example }

const example = `# certmail configuration. Every field is optional: "certmail serve" without a file runs an
# agent for localhost with the values shown here. Durations are written like "30m", "48h",
# "7d" or "1d12h". Keep this file private (chmod 600) once it holds a password.

# Directory for keys, database, message content and the evidence log; created with mode 0700.
data_dir = "./certmail-data"

# The agent's DNS name, in lower case. It names the agent's signing key and appears in every
# piece of evidence the agent signs: changing it later needs a new key.
hostname = "localhost"

# Mail domains whose senders this agent certifies. Default: the hostname alone.
# domains = ["localhost"]

# Base of the links in notifications that recipients open to pick up. Default: https://,
# the hostname, and the port of listen.https (left out when 443).
# public_url = "https://localhost:8443"

# Listener addresses as host:port; "" switches one off. Ports below 1024 need privileges.
[listen]
# SMTP submission for senders (STARTTLS, AUTH); 587 in production.
smtp_submission = "127.0.0.1:2587"
# SMTP for relays from peer agents (federation); 25 in production.
smtp_inbound = ""
# HTTPS: JSON API, sender pages, pickup pages, /log/, /.well-known/certmail.
https = "127.0.0.1:8443"
# Plain HTTP, only behind a proxy that terminates TLS.
http = ""

# SMTP submission. For benchmarks and trusted relays on this machine only: clients connecting
# from trusted_networks (loopback prefixes, such as ["127.0.0.0/8"]) may submit without
# STARTTLS and AUTH, in the name of trusted_user, an existing user. Off when empty.
[submission]
trusted_networks = []
trusted_user = ""

# Delivery of notifications and receipts.
[outbound]
# "mx" delivers to each domain's mail server itself; "smarthost" hands everything to a relay.
# Default: "smarthost" when a smarthost is set, else "mx".
# mode = "mx"
# The relay as host:port, and its login if it wants one.
smarthost = ""
username = ""
password = ""
# Encryption to the relay: "starttls", "tls" (implicit, port 465) or "none".
# Default with a smarthost: "tls" for port 465, else "starttls".
# tls = "starttls"
# After a temporary failure wait retry_initial, doubling each time up to retry_max; after
# give_up_after from the first attempt the message bounces.
retry_initial = "5m"
retry_max = "1h"
give_up_after = "5d"
# Deliveries at once. Default: 32 by MX; 4 through a smarthost, which is most often on the
# same host or network, where more would only take CPU from submissions (raise it for a
# distant one).
# workers = 32

# The pickup deadline a sender may ask for (header Certmail-Deadline); when it passes, the
# sender gets a signed non-delivery notice.
[deadlines]
default = "2d"
min = "1h"
max = "30d"
# Fraction of the time to the deadline after which the sender is warned that the item is not
# yet picked up (PEC warns after 12 of 24 hours).
warn_at = 0.5

# How long this agent keeps what it stores. Evidence hashes in the public log stay for good.
[retention]
# Message content, counted from posting; at least deadlines.max.
content_days = 90
# Evidence notes and bundles; at least content_days.
evidence_days = 3650

[limits]
# Largest message accepted, in bytes (25 MiB).
max_message_bytes = 26214400
# Recipients per message.
max_recipients = 100
# Login attempts per minute for one account, and from one client IP address.
login_per_minute_account = 10
login_per_minute_address = 30
# Connections each listener serves at once (SMTP submission, SMTP from peers, HTTPS); the
# rest wait to be accepted. serve lowers it when the process may open too few files for all.
max_connections = 1000
# SMTP submission sessions served at once (at most max_connections); further clients wait
# in the kernel's queue to be greeted, as under Postfix's process limit.
max_submission_sessions = 128
`
