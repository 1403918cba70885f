"""kokaq.protocol: the gRPC contract (``kokaq.protocol.v1``), the error mapping
and the conversions between wire messages and ``kokaq.core`` values."""
