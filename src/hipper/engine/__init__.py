"""The call engine: a node's calls (`b2bua.B2bua`), each call running its routing plan (`call.Call`) with SIP legs
(`leg`) and anchored media. It knows sip/, media/, domain/ and store/, never a feature: features (apps/) plug in
through `call.CallApplications`."""
