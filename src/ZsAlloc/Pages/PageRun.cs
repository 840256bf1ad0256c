namespace ZsAlloc.Pages;

/// <summary>A run of contiguous pages: its first global page number, its length, and how many of its pages are counted in use.</summary>
internal readonly record struct PageRun(int Head, int Pages, int Resident);
