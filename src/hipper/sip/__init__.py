"""SIP protocol layer: messages, transports, transactions, dialogs, digest and the registrar (RFC 3261)."""
