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

        /// <summary>ZSTD_c_contentSizeFlag and ZSTD_c_dictIDFlag (stable parameters): 0 leaves the field out of the frame.</summary>
        internal const int ContentSizeFlagParameter = 200;
        internal const int DictIdFlagParameter = 202;

        [LibraryImport(Library, EntryPoint = "ZSTD_CCtx_setParameter")]
        internal static partial nuint CCtxSetParameter(nint cctx, int parameter, int value);

        /// <summary>ZSTD_reset_session_only: ends a frame left unfinished (an output that did not fit), keeps the parameters.</summary>
        internal const int ResetSessionOnly = 1;

        [LibraryImport(Library, EntryPoint = "ZSTD_CCtx_reset")]
        internal static partial nuint CCtxReset(nint cctx, int reset);

        [LibraryImport(Library, EntryPoint = "ZSTD_CCtx_refCDict")]
        internal static partial nuint CCtxRefCDict(nint cctx, nint cdict);

        /// <summary>Compresses with the context's parameters and referenced dictionary; size or error code.</summary>
        [LibraryImport(Library, EntryPoint = "ZSTD_compress2")]
        internal static partial nuint Compress2(nint cctx, byte* dst, nuint dstCapacity, byte* src, nuint srcSize);

        /// <summary>A digested dictionary for compression at one level (copies the dictionary).</summary>
        [LibraryImport(Library, EntryPoint = "ZSTD_createCDict")]
        internal static partial nint CreateCDict(byte* dict, nuint dictSize, int compressionLevel);

        [LibraryImport(Library, EntryPoint = "ZSTD_freeCDict")]
        internal static partial nuint FreeCDict(nint cdict);

        [LibraryImport(Library, EntryPoint = "ZSTD_sizeof_CDict")]
        internal static partial nuint SizeofCDict(nint cdict);

        /// <summary>A digested dictionary for decompression (copies the dictionary); read-only, shared by threads.</summary>
        [LibraryImport(Library, EntryPoint = "ZSTD_createDDict")]
        internal static partial nint CreateDDict(byte* dict, nuint dictSize);

        [LibraryImport(Library, EntryPoint = "ZSTD_freeDDict")]
        internal static partial nuint FreeDDict(nint ddict);

        [LibraryImport(Library, EntryPoint = "ZSTD_sizeof_DDict")]
        internal static partial nuint SizeofDDict(nint ddict);

        [LibraryImport(Library, EntryPoint = "ZSTD_decompress_usingDDict")]
        internal static partial nuint DecompressUsingDDict(nint dctx, byte* dst, nuint dstCapacity, byte* src, nuint srcSize, nint ddict);

        /// <summary>
        /// Trains a dictionary of at most <paramref name="dictCapacity"/> bytes from samples laid end to end;
        /// returns its size or an error code (test with <see cref="DictIsError"/>).
        /// </summary>
        [LibraryImport(Library, EntryPoint = "ZDICT_trainFromBuffer")]
        internal static partial nuint TrainFromBuffer(byte* dictBuffer, nuint dictCapacity, byte* samples, nuint* sampleSizes, uint sampleCount);

        [LibraryImport(Library, EntryPoint = "ZDICT_isError")]
        internal static partial uint DictIsError(nuint code);

        [LibraryImport(Library, EntryPoint = "ZDICT_getErrorName")]
        internal static partial byte* DictErrorName(nuint code);

        [LibraryImport(Library, EntryPoint = "ZSTD_isError")]
        internal static partial uint IsError(nuint code);

        [LibraryImport(Library, EntryPoint = "ZSTD_getErrorName")]
        internal static partial byte* GetErrorName(nuint code);

        [LibraryImport(Library, EntryPoint = "ZSTD_versionNumber")]
        internal static partial uint VersionNumber();
    }
}
