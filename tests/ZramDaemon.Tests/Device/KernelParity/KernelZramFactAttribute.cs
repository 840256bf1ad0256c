namespace ZramDaemon.Tests.Device.KernelParity;

/// <summary>
/// A fact that needs the kernel's zram (built in or loaded: /sys/class/zram-control/hot_add) and root, to create a
/// zram device of its own as the oracle. Without them the test is reported skipped, with the reason, not failed.
/// </summary>
[AttributeUsage(AttributeTargets.Method, AllowMultiple = false)]
public sealed class KernelZramFactAttribute : FactAttribute
{
    public KernelZramFactAttribute() => Skip = UnavailableReason;

    /// <summary>Why the kernel's zram cannot serve as the oracle here, or null when it can.</summary>
    public static string? UnavailableReason =>
        !File.Exists(KernelZram.HotAdd) ? $"needs the kernel's zram ({KernelZram.HotAdd} is missing)"
        : Environment.UserName != "root" ? $"needs root to add a kernel zram device (running as {Environment.UserName})"
        : null;
}

/// <summary>The theory counterpart of <see cref="KernelZramFactAttribute"/>: skipped without the kernel's zram or root.</summary>
[AttributeUsage(AttributeTargets.Method, AllowMultiple = false)]
public sealed class KernelZramTheoryAttribute : TheoryAttribute
{
    public KernelZramTheoryAttribute() => Skip = KernelZramFactAttribute.UnavailableReason;
}
