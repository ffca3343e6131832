// Test classes run in parallel; tests inside a class run one after another.
[assembly: Parallelize(Scope = ExecutionScope.ClassLevel)]
