namespace Nbd;

/// <summary>TLS policy of the handshake (doc/proto.md "TLS support").</summary>
public enum NbdTlsMode
{
    /// <summary>NOTLS: NBD_OPT_STARTTLS is refused with ERR_UNSUP.</summary>
    Off,

    /// <summary>Clients may upgrade with NBD_OPT_STARTTLS; plain connections are served too.</summary>
    Optional,

    /// <summary>FORCEDTLS: every option but STARTTLS and ABORT gets ERR_TLS_REQD until TLS is up.</summary>
    Required,
}
