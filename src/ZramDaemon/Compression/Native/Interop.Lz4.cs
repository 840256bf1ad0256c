using System.Runtime.InteropServices;

namespace ZramDaemon.Compression.Native;

/// <summary>
/// The reference LZ4 library (liblz4.so.1, Debian's liblz4-1). Only the block API: one 4 KiB page in, one
/// block out, with caller-owned state so that no call allocates (the kernel's backend_lz4.c does the same).
/// </summary>
internal static unsafe partial class Interop
{
    internal static partial class Lz4
    {
        private const string Library = "liblz4.so.1";

        /// <summary>LZ4HC_CLEVEL_MIN .. LZ4HC_CLEVEL_MAX; 9 is LZ4HC_CLEVEL_DEFAULT.</summary>
        internal const int HcMinLevel = 1;
        internal const int HcMaxLevel = 12;
        internal const int HcDefaultLevel = 9;

        /// <summary>LZ4_ACCELERATION_DEFAULT .. LZ4_ACCELERATION_MAX.</summary>
        internal const int MinAcceleration = 1;
        internal const int MaxAcceleration = 65537;

        [LibraryImport(Library, EntryPoint = "LZ4_sizeofState")]
        internal static partial int SizeOfState();

        /// <summary>Returns the compressed size, or 0 when the result does not fit in dstCapacity.</summary>
        [LibraryImport(Library, EntryPoint = "LZ4_compress_fast_extState")]
        internal static partial int CompressFastExtState(void* state, byte* src, byte* dst, int srcSize, int dstCapacity, int acceleration);

        [LibraryImport(Library, EntryPoint = "LZ4_compress_default")]
        internal static partial int CompressDefault(byte* src, byte* dst, int srcSize, int dstCapacity);

        [LibraryImport(Library, EntryPoint = "LZ4_sizeofStateHC")]
        internal static partial int SizeOfStateHC();

        /// <summary>Returns the compressed size, or 0 when the result does not fit in maxDstSize.</summary>
        [LibraryImport(Library, EntryPoint = "LZ4_compress_HC_extStateHC")]
        internal static partial int CompressHCExtStateHC(void* state, byte* src, byte* dst, int srcSize, int maxDstSize, int compressionLevel);

        /// <summary>Returns the decompressed size, or a negative number for malformed input; never writes past dstCapacity.</summary>
        [LibraryImport(Library, EntryPoint = "LZ4_decompress_safe")]
        internal static partial int DecompressSafe(byte* src, byte* dst, int compressedSize, int dstCapacity);
    }
}
