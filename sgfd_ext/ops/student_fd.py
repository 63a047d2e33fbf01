"""TEMPORARY placeholder: replaced by the fused op."""
import torch
import torch.nn.functional as F


def student_fd_reference(x, weight, bias, teacher, negative_slope=0.01):
    s = F.normalize(F.leaky_relu(torch.addmm(bias, x, weight), negative_slope), dim=1)
    fd = ((s - teacher) ** 2).mean() if s.numel() else s.sum()
    return s, fd


student_fd = student_fd_reference
