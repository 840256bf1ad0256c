namespace ZramDaemon;

/// <summary>Exit codes, from sysexits.h where one fits.</summary>
public static class ExitCodes
{
    public const int Success = 0;

    /// <summary>A runtime failure: the daemon could not start or serve, or a control request failed.</summary>
    public const int Failure = 1;

    /// <summary>EX_USAGE: unknown option, missing or malformed argument.</summary>
    public const int Usage = 64;

    /// <summary>EX_CONFIG: a bad value in the configuration file or a ZRAMD_* variable.</summary>
    public const int Configuration = 78;
}
