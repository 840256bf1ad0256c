namespace ZramDaemon.Configuration;

/// <summary>NBD STARTTLS policy as configured (tls-mode): off, optional, required.</summary>
public enum TlsSetting
{
    Off,
    Optional,
    Required,
}
