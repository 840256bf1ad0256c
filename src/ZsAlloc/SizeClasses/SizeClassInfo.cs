namespace ZsAlloc.SizeClasses;

/// <summary>One merged size class: objects of up to <see cref="Size"/> bytes, packed into zspages of
/// <see cref="PagesPerZspage"/> pages holding <see cref="ObjectsPerZspage"/> objects.</summary>
public readonly record struct SizeClassInfo(int Index, int Size, int PagesPerZspage, int ObjectsPerZspage);
