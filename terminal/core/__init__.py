"""The kernel, standard library only: ids, money, clock, errors, logging, the
retry schedule, atomic files, sd_notify and the identification types."""
