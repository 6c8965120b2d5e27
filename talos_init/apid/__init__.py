"""apid: the node's API over mutual TLS, a supervised process apart from PID 1.

``protocol`` (wire format and the role table, shared with osctl), ``pki``
(certificates), ``server`` (TLS, limits, role checks), ``calls`` (what each
call does), ``facts`` (reading node facts from /proc), ``redact``.
"""
