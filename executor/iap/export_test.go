package iap

// BufferedMem returns the bytes of buffer memory the receive queue holds: what a
// relay makes the client keep by sending data nobody reads yet.
func (c *Conn) BufferedMem() int {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	n := 0
	for _, rb := range c.rq {
		n += cap(rb.buf)
	}
	return n
}

// Received returns the DATA payload bytes received so far.
func (c *Conn) Received() uint64 {
	c.ackMu.Lock()
	defer c.ackMu.Unlock()
	return c.received
}
