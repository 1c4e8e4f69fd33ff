"""Tutorial part 8 ("Introduction to Plans", PySyft 0.2.9), on real worker processes.

The tutorial's own code, cell by cell, with ``import syftzmq as sy`` instead of
``import syft as sy`` and nothing else changed: each device is a worker process that receives
its tagged tensors with ``data=(x11, x12)`` at start, and ``device_1.search('input_data')[0]``
asks that process for a pointer to the tensor tagged ``input_data``.

Plans here ship the Python function (and a class plan's layers) to the worker instead of a
traced list of operations: see ``syftzmq/plan/plan.py``.
"""

import _tutorial  # noqa: F401  (runs from a checkout, too)

# In [1]:
import torch
import torch.nn as nn
import torch.nn.functional as F

# In [2]:
import syftzmq as sy  # import the Pysyft library
hook = sy.TorchHook(torch)  # hook PyTorch ie add extra functionalities

# IMPORTANT: Local worker should not be a client worker
hook.local_worker.is_client_worker = False


server = hook.local_worker

# In [3]:
x11 = torch.tensor([-1, 2.]).tag('input_data')
x12 = torch.tensor([1, -2.]).tag('input_data2')
x21 = torch.tensor([-1, 2.]).tag('input_data')
x22 = torch.tensor([1, -2.]).tag('input_data2')

device_1 = sy.VirtualWorker(hook, id="device_1", data=(x11, x12))
device_2 = sy.VirtualWorker(hook, id="device_2", data=(x21, x22))
devices = device_1, device_2

# In [4]:
@sy.func2plan()
def plan_double_abs(x):
    x = x + x
    x = torch.abs(x)
    return x

# In [5]:
print(plan_double_abs)

# In [6]:
pointer_to_data = device_1.search('input_data')[0]
print(pointer_to_data)

# In [7]:
print(plan_double_abs.is_built)

# In [8]:
# Sending non-built Plan will fail
try:
    plan_double_abs.send(device_1)
except RuntimeError as error:
    print(error)

# In [9]:
plan_double_abs.build(torch.tensor([1., -2.]))

# In [10]:
print(plan_double_abs.is_built)

# In [11]:
# This cell is executed successfully
pointer_plan = plan_double_abs.send(device_1)
print(pointer_plan)

# In [12]:
pointer_to_result = pointer_plan(pointer_to_data)
print(pointer_to_result)

# In [13]:
print("double_abs:", pointer_to_result.get())

# In [14]:
class Net(sy.Plan):
    def __init__(self):
        super(Net, self).__init__()
        self.fc1 = nn.Linear(2, 3)
        self.fc2 = nn.Linear(3, 2)

    def forward(self, x):
        x = F.relu(self.fc1(x))
        x = self.fc2(x)
        return F.log_softmax(x, dim=0)


# In [15]:
net = Net()

# In [16]:
print(net)

# In [17]:
net.build(torch.tensor([1., 2.]))

# In [18]:
pointer_to_net = net.send(device_1)
print(pointer_to_net)

# In [19]:
pointer_to_data = device_1.search('input_data')[0]

# In [20]:
pointer_to_result = pointer_to_net(pointer_to_data)
print(pointer_to_result)

# In [21]:
print("net on device_1:", pointer_to_result.get())

# In [22]:
class Net(sy.Plan):
    def __init__(self):
        super(Net, self).__init__()
        self.fc1 = nn.Linear(2, 3)
        self.fc2 = nn.Linear(3, 2)

    def forward(self, x):
        x = F.relu(self.fc1(x))
        x = self.fc2(x)
        return F.log_softmax(x, dim=0)


# In [23]:
net = Net()

# Build plan
net.build(torch.tensor([1., 2.]))

# In [24]:
pointer_to_net_1 = net.send(device_1)
pointer_to_data = device_1.search('input_data')[0]
pointer_to_result = pointer_to_net_1(pointer_to_data)
print("net2 on device_1:", pointer_to_result.get())

# In [25]:
pointer_to_net_2 = net.send(device_2)
pointer_to_data = device_2.search('input_data')[0]
pointer_to_result = pointer_to_net_2(pointer_to_data)
print("net2 on device_2:", pointer_to_result.get())

# In [26]:
@sy.func2plan(args_shape=[(-1, 1)])
def plan_double_abs(x):
    x = x + x
    x = torch.abs(x)
    return x

print(plan_double_abs.is_built)

# In [27]:
@sy.func2plan(args_shape=[(1, 2), (-1, 2)])
def plan_sum_abs(x, y):
    s = x + y
    return torch.abs(s)

print(plan_sum_abs.is_built)

# In [28]:
@sy.func2plan(args_shape=[(1,)], state=(torch.tensor([1]), ))
def plan_abs(x, state):
    bias, = state.read()
    x = x.abs()
    return x + bias

# In [29]:
pointer_plan = plan_abs.send(device_1)
x_ptr = torch.tensor([-1, 0]).send(device_1)
p = pointer_plan(x_ptr)
print("plan_abs:", p.get())
