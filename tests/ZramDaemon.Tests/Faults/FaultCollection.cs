namespace ZramDaemon.Tests.Faults;

/// <summary>The fault tests run alone, after the parallel ones: their memory bounds are read from the whole
/// process (managed heap and RSS), which other tests' devices would otherwise fill.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class FaultCollection
{
    public const string Name = "Faults (alone)";
}
