namespace Nbd.Tests.Fuzz;

/// <summary>The fuzz tests run alone, after the parallel ones: their memory bound is read from the whole
/// process's managed heap, which other tests' devices and servers would otherwise fill.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class FuzzCollection
{
    public const string Name = "Fuzz (alone)";
}
