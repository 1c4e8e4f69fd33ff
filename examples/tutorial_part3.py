"""The user's walkthrough (tutorial part 3, "Advanced Remote Execution Tools"), cell by cell.

The cells are the tutorial's own code; the only change is ``import syftzmq as sy`` instead of
``import syft as sy``. bob and alice are real worker processes. Each cell's output is printed the
way the notebook would show it.
"""

from _tutorial import show  # runs from a checkout, too


# In [ ]:
import torch
import syftzmq as sy
hook = sy.TorchHook(torch)

print("## Section 3.1 - Pointer to pointer\n")
# In [ ]:
bob = sy.VirtualWorker(hook, id='bob')
alice = sy.VirtualWorker(hook, id='alice')

# In [ ]:
# this is a local tensor
x = torch.tensor([1,2,3,4])
show("x", x)

# In [ ]:
# this sends the local tensor to Bob
x_ptr = x.send(bob)

# this is now a pointer
show("x_ptr", x_ptr)

# In [ ]:
# now we can SEND THE POINTER to alice!!!
pointer_to_x_ptr = x_ptr.send(alice)

show("pointer_to_x_ptr", pointer_to_x_ptr)

# In [ ]:
# As you can see above, Bob still has the actual data (data is always stored in a LocalTensor type).
show("bob._objects", bob._objects)

# In [ ]:
# Alice, on the other hand, has x_ptr!! (notice how it points at bob)
show("alice._objects", alice._objects)

# In [ ]:
# and we can use .get() to get x_ptr back from Alice

x_ptr = pointer_to_x_ptr.get()
show("x_ptr", x_ptr)

# In [ ]:
# and then we can use x_ptr to get x back from Bob!

x = x_ptr.get()
show("x", x)

print("## Arithmetic on pointer -> pointer -> data\n")
# In [ ]:
show("bob._objects", bob._objects)

# In [ ]:
show("alice._objects", alice._objects)

# In [ ]:
p2p2x = torch.tensor([1,2,3,4,5]).send(bob).send(alice)

y = p2p2x + p2p2x

# In [ ]:
show("bob._objects", bob._objects)

# In [ ]:
show("alice._objects", alice._objects)

# In [ ]:
show("y.get().get()", y.get().get())

# In [ ]:
show("bob._objects", bob._objects)

# In [ ]:
show("alice._objects", alice._objects)

# In [ ]:
show("p2p2x.get().get()", p2p2x.get().get())

# In [ ]:
show("bob._objects", bob._objects)

# In [ ]:
show("alice._objects", alice._objects)

print("## Section 3.2 - Pointer chain operations\n")
# In [ ]:
# x is now a pointer to the data which lives on Bob's machine
x = torch.tensor([1,2,3,4,5]).send(bob)

# In [ ]:
print('  bob:', bob._objects)
print('alice:',alice._objects)
print()

# In [ ]:
x = x.move(alice)

# In [ ]:
print('  bob:', bob._objects)
print('alice:',alice._objects)
print()

# In [ ]:
show("x", x)

print("Done: bob and alice were real processes", [bob.process.pid, alice.process.pid])
