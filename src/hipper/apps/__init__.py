"""Call processing: the B2BUA and the executor that runs routing plans with SIP legs and media."""
