namespace ZsAlloc.Pages;

/// <summary>A run of contiguous pages: its first global page number and its length.</summary>
internal readonly record struct PageRun(int Head, int Pages);
