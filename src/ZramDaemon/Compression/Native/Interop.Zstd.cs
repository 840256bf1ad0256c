using System.Runtime.InteropServices;

namespace ZramDaemon.Compression.Native;

/// <summary>
/// The reference zstd library (libzstd.so.1, Debian's libzstd1). Explicit contexts, created once per stream
/// and reused, so that compressing a page allocates nothing after the first call.
/// </summary>
internal static unsafe partial class Interop
{
    internal static partial class Zstd
    {
        private const string Library = "libzstd.so.1";

        /// <summary>The levels zramd accepts; 3 is ZSTD_CLEVEL_DEFAULT (and the kernel's default).</summary>
        internal const int MinLevel = 1;
        internal const int MaxLevel = 22;
        internal const int DefaultLevel = 3;

        [LibraryImport(Library, EntryPoint = "ZSTD_createCCtx")]
        internal static partial nint CreateCCtx();

        [LibraryImport(Library, EntryPoint = "ZSTD_freeCCtx")]
        internal static partial nuint FreeCCtx(nint cctx);

        [LibraryImport(Library, EntryPoint = "ZSTD_createDCtx")]
        internal static partial nint CreateDCtx();

        [LibraryImport(Library, EntryPoint = "ZSTD_freeDCtx")]
        internal static partial nuint FreeDCtx(nint dctx);

        /// <summary>Returns the compressed size or an error code (test with <see cref="IsError"/>).</summary>
        [LibraryImport(Library, EntryPoint = "ZSTD_compressCCtx")]
        internal static partial nuint CompressCCtx(nint cctx, byte* dst, nuint dstCapacity, byte* src, nuint srcSize, int compressionLevel);

        /// <summary>Returns the decompressed size or an error code (test with <see cref="IsError"/>).</summary>
        [LibraryImport(Library, EntryPoint = "ZSTD_decompressDCtx")]
        internal static partial nuint DecompressDCtx(nint dctx, byte* dst, nuint dstCapacity, byte* src, nuint srcSize);

        [LibraryImport(Library, EntryPoint = "ZSTD_isError")]
        internal static partial uint IsError(nuint code);

        [LibraryImport(Library, EntryPoint = "ZSTD_getErrorName")]
        internal static partial byte* GetErrorName(nuint code);

        [LibraryImport(Library, EntryPoint = "ZSTD_versionNumber")]
        internal static partial uint VersionNumber();
    }
}
