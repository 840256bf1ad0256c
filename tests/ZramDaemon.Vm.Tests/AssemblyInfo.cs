// The VM boots are the slow part of the suite; they run one after the other (see VmCollection).
[assembly: CollectionBehavior(DisableTestParallelization = true)]
