! test_fortran.f90 - the Fortran module against the engine: nested nodes
! with exact counts, an exit out of order refused with the engine's
! message, a bad config's message, and the export written.  Exit status 0
! when every check holds, 1 otherwise (each failure printed).
program test_fortran
  use, intrinsic :: iso_c_binding
  use kfm
  implicit none
  type(kfm_session) :: s, bad, dflt
  type(kfm_node_stats_c) :: outer, inner
  integer(c_int32_t) :: id_outer
  integer :: rc, i, failures
  character(len=64) :: path
  logical :: exists
  interface
    integer(c_int) function c_unlink(p) bind(c, name="unlink")
      import :: c_int, c_char
      character(kind=c_char), dimension(*), intent(in) :: p
    end function
  end interface

  failures = 0
  rc = kfm_create(bad, "level=bogus")
  call check(rc == KFM_EBADVALUE, "bad level refused")
  call check(index(kfm_errmsg(bad), "level: bad value 'bogus'") > 0, "bad level message")

  write (path, '(a,i0,a)') "/tmp/kfm_fortran_", getpid(), ".json"
  rc = kfm_create(s, "level=basic,rate=off,output="//trim(path))
  call check(rc == 0, "create")
  call check(kfm_start(s) == 0, "start")
  call check(kfm_register(s, "outer", id_outer) == 0, "register")
  call check(kfm_enter(s, id_outer) == 0, "enter outer")
  do i = 1, 10
    call check(kfm_enter_name(s, "inner   ") == 0, "enter inner")
    call check(kfm_exit_name(s, "inner") == 0, "exit inner")
  end do
  call check(kfm_enter_name(s, "inner") == 0, "enter inner again")
  rc = kfm_exit(s, id_outer)
  call check(rc == KFM_EORDER, "exit out of order refused")
  call check(index(kfm_errmsg(s), "out of order") > 0, "out-of-order message")
  call check(kfm_exit_name(s, "inner") == 0, "exit inner again")
  call check(kfm_exit(s, id_outer) == 0, "exit outer")

  call check(kfm_node_stats(s, "inner", inner) == 0, "stats inner")
  call check(kfm_node_stats(s, "outer", outer) == 0, "stats outer")
  call check(inner%count == 11, "inner count 11")
  call check(outer%count == 1, "outer count 1")
  call check(outer%total_ns >= inner%total_ns, "outer includes inner")
  call check(kfm_node_stats(s, "nowhere", inner) == KFM_ENONODE, "unknown node")
  call check(.not. kfm_default(dflt), "no default session outside kfm run")

  call check(kfm_stop(s) == 0, "stop writes output")
  inquire (file=trim(path), exist=exists)
  call check(exists, "export written")
  call kfm_destroy(s)
  if (exists) rc = c_unlink(trim(path)//c_null_char)
  if (failures > 0) then
    print '(i0,a)', failures, " check(s) failed"
    stop 1
  end if
  print '(a)', "all checks passed"

contains
  subroutine check(ok, what)
    logical, intent(in) :: ok
    character(len=*), intent(in) :: what
    if (.not. ok) then
      print '(2a)', "FAILED: ", what
      failures = failures + 1
    end if
  end subroutine
end program test_fortran
