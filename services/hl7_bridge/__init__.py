"""The HL7 v2 pharmacy bridge: `pharmacy.orders` out as RDE^O11 over MLLP, the pharmacy's
answers in as `hai.pharmacy.order.status` (CONTRACT.md, HL7 v2 bridge)."""
