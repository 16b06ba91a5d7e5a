"""--device_data: the training windows cut on the device from a resident copy of the scaled series.

No worker processes and no host-to-device copy per batch: the split's series moves to the device once,
and each batch is an index gather. Same epoch semantics as the sharded DataLoader path: the permutation
accelerate's seedable sampler draws (seed + epoch), whole batches only (the ragged tail dropped), batch i
of the epoch going to process i % world, every process the same number of batches. Resumable mid-epoch
with `skip_first`. Validation and test keep their DataLoaders, whose padding `gather_for_metrics`
removes, so their metrics stay exact on any number of processes.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from timellm_launcher.data_provider.windows import WindowDataset


class DeviceWindowLoader:
    def __init__(self, dataset: WindowDataset, batch_size: int, device: torch.device, *, seed: int,
                 num_processes: int = 1, process_index: int = 0, skip: int = 0) -> None:
        self.dataset, self.batch_size, self.device = dataset, batch_size, device
        self.seed, self.num_processes, self.process_index, self.skip = seed, num_processes, process_index, skip
        self.values = dataset.values.to(device)
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.dataset) // self.batch_size // self.num_processes

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def skip_first(self, batches: int) -> DeviceWindowLoader:
        """The same loader, starting `batches` into the current epoch (for a mid-epoch resume)."""
        clone = DeviceWindowLoader.__new__(DeviceWindowLoader)
        clone.__dict__.update(self.__dict__)
        clone.skip = batches
        return clone

    def order(self) -> torch.Tensor:
        """This process's sample indices for the epoch, [len(self), batch_size], on the device."""
        # the permutation accelerate's seedable sampler draws, so both paths see the same samples in the same order
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        permutation = torch.randperm(len(self.dataset), generator=generator)
        batches = len(self) * self.num_processes
        grid = permutation[:batches * self.batch_size].view(batches, self.batch_size)
        return grid[self.process_index::self.num_processes].to(self.device, non_blocking=True)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        # a DataLoader draws its workers' base seed from the global generator when an epoch starts; drawing it
        # too keeps the dropout masks that follow identical to the DataLoader path's
        torch.empty((), dtype=torch.int64).random_()
        order = self.order()
        for i in range(self.skip, len(order)):
            yield self.dataset.cut(self.values, order[i])
