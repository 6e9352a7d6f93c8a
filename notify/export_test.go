package notify

// CheckPeer exposes the dial-time check to the external tests.
func CheckPeer(o *Outbound, address string) error { return o.checkPeer(address) }
