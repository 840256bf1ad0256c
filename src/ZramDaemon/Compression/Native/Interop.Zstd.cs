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

        /// <summary>
        /// ZSTD_frameParameters. The block functions write no frame, so the fields do not matter there; all 0.
        /// </summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct FrameParameters
        {
            internal int ContentSizeFlag;
            internal int ChecksumFlag;
            internal int NoDictIdFlag;
        }

        /// <summary>
        /// Starts a block with a digested dictionary (its entropy tables and content to match against), the working
        /// tables sized for <paramref name="pledgedSrcSize"/> bytes. The block-level API (static-linking section of
        /// zstd.h, exported by libzstd.so.1): one compressed block without the frame around it.
        /// </summary>
        [LibraryImport(Library, EntryPoint = "ZSTD_compressBegin_usingCDict_advanced")]
        internal static partial nuint CompressBeginUsingCDictAdvanced(nint cctx, nint cdict, FrameParameters fParams, ulong pledgedSrcSize);

        /// <summary>
        /// One compressed block (at most 128 KiB in): its size, 0 when zstd finds it not compressible, or an error
        /// code (also when it does not fit in <paramref name="dstCapacity"/>).
        /// </summary>
        [LibraryImport(Library, EntryPoint = "ZSTD_compressBlock")]
        internal static partial nuint CompressBlock(nint cctx, byte* dst, nuint dstCapacity, byte* src, nuint srcSize);

        [LibraryImport(Library, EntryPoint = "ZSTD_decompressBegin_usingDDict")]
        internal static partial nuint DecompressBeginUsingDDict(nint dctx, nint ddict);

        /// <summary>Decodes one compressed block made by <see cref="CompressBlock"/>; its size or an error code.</summary>
        [LibraryImport(Library, EntryPoint = "ZSTD_decompressBlock")]
        internal static partial nuint DecompressBlock(nint dctx, byte* dst, nuint dstCapacity, byte* src, nuint srcSize);

        /// <summary>
        /// A digested dictionary for compression at one level that refers to the dictionary's bytes instead of
        /// copying them (they must outlive it).
        /// </summary>
        [LibraryImport(Library, EntryPoint = "ZSTD_createCDict_byReference")]
        internal static partial nint CreateCDictByReference(byte* dict, nuint dictSize, int compressionLevel);

        [LibraryImport(Library, EntryPoint = "ZSTD_freeCDict")]
        internal static partial nuint FreeCDict(nint cdict);

        [LibraryImport(Library, EntryPoint = "ZSTD_sizeof_CDict")]
        internal static partial nuint SizeofCDict(nint cdict);

        /// <summary>What a CDict of the dictionary at the level will cost, dictionary copy included (static-linking
        /// section of zstd.h; exported by libzstd.so.1).</summary>
        [LibraryImport(Library, EntryPoint = "ZSTD_estimateCDictSize")]
        internal static partial nuint EstimateCDictSize(nuint dictSize, int compressionLevel);

        /// <summary>
        /// A digested dictionary for decompression that refers to the dictionary's bytes (they must outlive it);
        /// read-only, shared by threads.
        /// </summary>
        [LibraryImport(Library, EntryPoint = "ZSTD_createDDict_byReference")]
        internal static partial nint CreateDDictByReference(byte* dict, nuint dictSize);

        [LibraryImport(Library, EntryPoint = "ZSTD_freeDDict")]
        internal static partial nuint FreeDDict(nint ddict);

        [LibraryImport(Library, EntryPoint = "ZSTD_sizeof_DDict")]
        internal static partial nuint SizeofDDict(nint ddict);

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
