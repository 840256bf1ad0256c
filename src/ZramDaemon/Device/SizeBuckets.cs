namespace ZramDaemon.Device;

/// <summary>
/// The order of a post-processing run with a budget (recompress max_pages, writeback max_pages or the daily
/// writeback_limit), as the kernel's since 6.12 (place_pp_slot, select_pp_slot): the largest objects first, counted
/// in buckets of 64 bytes, so that the pages the budget allows free the most memory. Instead of the kernel's list
/// of every candidate, one counting walk over the table, then walks taking objects of at least a size.
/// </summary>
internal static class SizeBuckets
{
    /// <summary>The kernel's PP_BUCKET_SIZE_RANGE.</summary>
    public const int BucketBytes = 64;

    /// <summary>Buckets 0 to 64: a raw (huge) page of 4096 bytes is the last.</summary>
    public const int Count = (ZramDevice.PageSize / BucketBytes) + 1;

    public static int Of(int size) => size / BucketBytes;

    /// <summary>
    /// The smallest sizes of the walks a run makes, largest objects first, given the candidates counted per bucket:
    /// every object above the bucket where <paramref name="budget"/> pages are reached, then that bucket, then
    /// (candidates change while the run goes) the rest; each walk takes the sizes below the one before. One walk of
    /// any size when the budget covers them all.
    /// </summary>
    public static int[] MinimumSizes(ReadOnlySpan<long> counts, long budget)
    {
        long above = 0;
        for (int bucket = Count - 1; bucket > 0; bucket--)
        {
            if (above + counts[bucket] >= budget)
            {
                return above == 0 ? [bucket * BucketBytes, 0] : [(bucket + 1) * BucketBytes, bucket * BucketBytes, 0];
            }

            above += counts[bucket];
        }

        return [0];
    }
}
