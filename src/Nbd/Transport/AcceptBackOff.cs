namespace Nbd;

/// <summary>How long an accept loop waits when accept(2) fails (EMFILE, ENFILE, ENOBUFS): such a failure repeats at once
/// until a descriptor or buffer is freed, so retrying at once spins a CPU and floods the log. Shared by the NBD
/// listeners and the daemon's control socket.</summary>
public static class AcceptBackOff
{
    /// <summary>Short enough that a freed descriptor is used soon; long enough that a full table costs about ten log
    /// lines a second.</summary>
    public static readonly TimeSpan Delay = TimeSpan.FromMilliseconds(100);
}
