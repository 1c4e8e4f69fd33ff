"""Tutorial part 7 ("Federated Learning with FederatedDataset"), on real worker processes.

The tutorial's own code, cell by cell, with ``import syftzmq as sy`` instead of
``import syft as sy``. What changed, and only that — the data source: the tutorial's
``sy.create_sandbox(globals())`` downloads the Boston housing data and spreads it over six
virtual workers, and ``grid.search("#boston", "#data")`` finds it. With no network here, the
same cell builds synthetic Boston-shaped data (506 samples x 13 features, a price that is a
linear function of them plus noise; see ``_synthetic.py``) and sends half of it to each of two
worker processes, bob and alice, as ``{worker id: [pointer]}`` — the shape of the search's
result. The training loop is unchanged (50 epochs); the total loss is printed every epoch
and falls.
"""

import _tutorial  # noqa: F401  (runs from a checkout, too)
from _synthetic import synthetic_boston

# In [ ]:
import torch as th
import syftzmq as sy

# In [ ]:
# the tutorial: sy.create_sandbox(globals(), verbose=False)
hook = sy.TorchHook(th)
bob = sy.VirtualWorker(hook, id="bob")
alice = sy.VirtualWorker(hook, id="alice")
workers = [bob, alice]
data, target = synthetic_boston()
half = (len(data) + 1) // 2

# In [ ]:
# the tutorial: boston_data = grid.search("#boston", "#data")
#               boston_target = grid.search("#boston", "#target")
boston_data = {w.id: [data[i * half:(i + 1) * half].send(w)] for i, w in enumerate(workers)}
boston_target = {w.id: [target[i * half:(i + 1) * half].send(w)] for i, w in enumerate(workers)}

# In [ ]:
n_features = boston_data['alice'][0].shape[1]
n_targets = 1

model = th.nn.Linear(n_features, n_targets)

# In [ ]:
# Cast the result in BaseDatasets
datasets = []
for worker in boston_data.keys():
    dataset = sy.BaseDataset(boston_data[worker][0], boston_target[worker][0])
    datasets.append(dataset)

# In [ ]:
# Build the FederatedDataset object
dataset = sy.FederatedDataset(datasets)
print(dataset.workers)
optimizers = {}
for worker in dataset.workers:
    optimizers[worker] = th.optim.Adam(params=model.parameters(),lr=1e-2)

# In [ ]:
train_loader = sy.FederatedDataLoader(dataset, batch_size=32, shuffle=False, drop_last=False)

# In [ ]:
epochs = 50
for epoch in range(1, epochs + 1):
    loss_accum = 0
    for batch_idx, (data, target) in enumerate(train_loader):
        model.send(data.location)

        optimizer = optimizers[data.location.id]
        optimizer.zero_grad()
        pred = model(data)
        loss = ((pred.view(-1) - target)**2).mean()
        loss.backward()
        optimizer.step()

        model.get()
        loss = loss.get()

        loss_accum += float(loss)

        if batch_idx % 8 == 0:
            print('Train Epoch: {} [{}/{} ({:.0f}%)]\tBatch loss: {:.6f}'.format(
                epoch, batch_idx, len(train_loader),
                100. * batch_idx / len(train_loader), loss.item()))

    print('Total loss', loss_accum)

print("Done: bob and alice were real processes", [bob.process.pid, alice.process.pid])
