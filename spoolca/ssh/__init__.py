"""OpenSSH certificates: the request a stick brings, the policy it is judged by, the
certificate signed for it, and the KRL that revokes it. Pure: no I/O, no key unlocked."""
