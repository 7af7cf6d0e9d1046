"""Beyond one process: context parallelism for one shot (torchrun), Ray for many stories."""
