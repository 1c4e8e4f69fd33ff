"""Tutorial part 1 ("Basic tools of private deep learning"), cell by cell, on real workers.

The cells are the series' own code with ``import syftzmq as sy`` instead of ``import syft as sy``.
"""

from _tutorial import show  # runs from a checkout, too


import torch
from torch.nn import Parameter
import torch.nn as nn

import syftzmq as sy
hook = sy.TorchHook(torch)

print("## Section 1: basic remote execution\n")
bob = sy.VirtualWorker(hook, id="bob")
x = torch.tensor([1,2,3,4,5])
y = torch.tensor([1,1,1,1,1])
x_ptr = x.send(bob)
y_ptr = y.send(bob)
show("x_ptr", x_ptr)
show("bob._objects", bob._objects)
z = x_ptr + x_ptr
show("z", z)
show("bob._objects", bob._objects)
show("x_ptr.location", x_ptr.location)
show("x_ptr.id_at_location", x_ptr.id_at_location)
show("x_ptr.id", x_ptr.id)
show("x_ptr.owner", x_ptr.owner)
show("sy.local_worker", sy.local_worker)
show("x_ptr.get()", x_ptr.get())
show("y_ptr.get()", y_ptr.get())
show("z.get()", z.get())
show("bob._objects", bob._objects)

print("## Section 2: using tensor pointers\n")
x = torch.tensor([1,2,3,4,5]).send(bob)
y = torch.tensor([1,1,1,1,1]).send(bob)
z = x + y
show("z", z)
show("z.get()", z.get())
z = torch.add(x,y)
show("z", z)
show("z.get()", z.get())

x = torch.tensor([1,2,3,4,5.], requires_grad=True).send(bob)
y = torch.tensor([1,1,1,1,1.], requires_grad=True).send(bob)
z = (x + y).sum()
show("z.backward()", z.backward())
x = x.get()
show("x", x)
show("x.grad", x.grad)
