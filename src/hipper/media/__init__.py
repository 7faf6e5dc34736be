"""Media engine: RTP, G.711, DTMF, mixer, player, recorder — no SIP knowledge (see DESIGN.md "Media")."""
