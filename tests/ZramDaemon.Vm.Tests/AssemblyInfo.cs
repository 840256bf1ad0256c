// The VM boots are the slow part of the suite; they run one after the other (see VmCollection).
[assembly: CollectionBehavior(DisableTestParallelization = true)]

// Everything here drives Linux: qemu, the nbd driver, systemd, dpkg.
[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]
