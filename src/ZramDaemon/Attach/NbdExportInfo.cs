namespace ZramDaemon.Attach;

/// <summary>What the handshake told the client about the export: the kernel needs the size and the
/// transmission flags (read-only, flush, FUA, trim, multi-conn) to set up the device.</summary>
/// <param name="TransmissionFlags">NBD_FLAG_* as the server sent them (NBD_FLAG_HAS_FLAGS included).</param>
/// <param name="PreferredBlockSize">from NBD_INFO_BLOCK_SIZE, or 0 when the server did not say.</param>
public readonly record struct NbdExportInfo(long Size, ushort TransmissionFlags, int PreferredBlockSize);
