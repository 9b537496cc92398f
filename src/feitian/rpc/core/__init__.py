"""Pure Kuafu protocol logic: framing, handshake messages, address parsing, endpoint selection. No I/O."""
